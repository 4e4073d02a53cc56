//! The benchmark firmware's report (the protocol of `runtime/mcu/nnc_mcu.c`)
//! and the decoding of its mark records into exact instruction times.
//!
//! Under `-icount shift=0` a read of CMSDK timer 0 on the instruction with
//! index `t` (in execution order) returns `V0 - floor((t + c) / 40)`: the
//! timer ticks on every 40th instruction. A mark spins until a tick (a
//! 4-instruction loop of `n` iterations), waits 32 instructions and reads
//! the timer on 5 consecutive instructions `w0..w4`; the next tick falls
//! on one of `w1..w4`, the first read `wj` that shows it, so that read's
//! instruction is `40 * (0xFFFFFFFF - wj)` up to a constant that cancels in
//! differences. From the mark's fixed instruction layout
//! (`nnc_mcu_clock.S`): its first instruction (entry) is `j + 4n + 40`
//! instructions before `wj`, and the first instruction after it returns
//! (exit) `7 - j` after.

use super::{McuError, Result};

/// Instructions between the exit of the first mark of `nnc_mcu_measure`
/// and the entry of the second besides the measured function's own: three
/// moves and the `blx` before it, a move, a `movs` and the `bl` after it.
pub const MEASURE_OVERHEAD: u64 = 7;

/// Instructions per timer tick under `-icount shift=0` (PCLK 25 MHz).
pub const TICK: u64 = 40;

/// A decoded mark: instruction times of its entry and of its exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    pub entry: u64,
    pub exit: u64,
    /// Which window read saw the tick (1..=4); the calibration test checks
    /// that every phase occurs.
    pub phase: u32,
}

impl Mark {
    /// Decodes a record as the firmware stores it: `w4, w0, n, v, w1, w2,
    /// w3` (v: the timer value after the tick the spin loop saw).
    pub fn decode(r: [u32; 7]) -> Result<Mark> {
        let [w4, w0, n, v, w1, w2, w3] = r;
        let w = [w0, w1, w2, w3, w4];
        let bad = |why: &str| {
            McuError::Report(format!(
                "timer readings {r:08x?} {why}: is QEMU running with -icount shift=0?"
            ))
        };
        if n == 0 {
            return Err(bad("have no spin iteration"));
        }
        if w0 != v || w4 == v {
            return Err(bad("do not straddle one tick"));
        }
        let j = (1..5).find(|&j| w[j] != v).expect("w4 differs");
        if w[j] != v.wrapping_sub(1) || w[j..].iter().any(|&x| x != w[j]) {
            return Err(bad("do not tick by one"));
        }
        let at = TICK * u64::from(u32::MAX - w[j]);
        let before = j as u64 + 4 * u64::from(n) + 40;
        let entry = at
            .checked_sub(before)
            .ok_or_else(|| bad("start before the timer"))?;
        Ok(Mark {
            entry,
            exit: at + 7 - j as u64,
            phase: j as u32,
        })
    }
}

/// One output compared on the device.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    pub output: usize,
    pub elements: u64,
    pub mismatches: u64,
    /// Of the mismatches, those with a NaN on either side.
    pub nan_mismatches: u64,
    pub max_abs: f64,
    pub max_rel: f64,
}

/// One measured run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    /// Instructions of the model's entry point, from its first instruction
    /// to its return.
    pub instructions: u64,
    /// The marks around it (`nnc_mcu_measure`).
    pub marks: [Mark; 2],
    /// The profile marks (slot 0: the start of the run, slot i + 1: the end
    /// of step i); empty without `-DNNC_PROFILE`.
    pub profile: Vec<Mark>,
}

impl Run {
    /// Instructions of each step: from the exit of the previous hook to the
    /// entry of its own (so including its hook call).
    pub fn steps(&self) -> Vec<u64> {
        self.profile
            .windows(2)
            .map(|w| w[1].entry - w[0].exit)
            .collect()
    }

    /// Instructions the profile hooks themselves executed.
    pub fn hooks(&self) -> u64 {
        self.profile.iter().map(|m| m.exit - m.entry).sum()
    }
}

/// Everything the firmware reported.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub steps: usize,
    pub runs: Vec<Run>,
    pub checks: Vec<Check>,
}

fn words(f: &[&str], line: &str) -> Result<[u32; 7]> {
    let v: Vec<u32> = f
        .iter()
        .map(|x| u32::from_str_radix(x, 16))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| McuError::Report(format!("bad record `{line}`")))?;
    v.try_into()
        .map_err(|_| McuError::Report(format!("bad record `{line}`")))
}

/// Parses the firmware's standard output. An `error`, `fault` or missing
/// `done` line is an error naming it.
pub fn parse(out: &str) -> Result<Report> {
    let mut rep = Report::default();
    let mut expected_runs = None;
    let mut done = false;
    // (run, slot) -> mark, in the order printed.
    let mut meas: Vec<(usize, usize, Mark)> = Vec::new();
    let mut prof: Vec<(usize, usize, Mark)> = Vec::new();
    let num = |s: &str, line: &str| -> Result<usize> {
        s.parse()
            .map_err(|_| McuError::Report(format!("bad line `{line}`")))
    };
    for line in out.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["nnc-mcu", "1", "runs", r, "steps", s] => {
                expected_runs = Some(num(r, line)?);
                rep.steps = num(s, line)?;
            }
            [tag @ ("M" | "P"), run, slot, rest @ ..] if rest.len() == 7 => {
                let m = Mark::decode(words(rest, line)?)?;
                let e = (num(run, line)?, num(slot, line)?, m);
                if *tag == "M" { &mut meas } else { &mut prof }.push(e);
            }
            ["check", k, n, miss, abs, rel, nan] => rep.checks.push(Check {
                output: num(k, line)?,
                elements: num(n, line)? as u64,
                mismatches: num(miss, line)? as u64,
                nan_mismatches: num(nan, line)? as u64,
                max_abs: abs.parse().unwrap_or(f64::NAN),
                max_rel: rel.parse().unwrap_or(f64::NAN),
            }),
            ["error", "run", r, "rc", c] => {
                return Err(McuError::Report(format!(
                    "the model's entry point returned {c} in run {r} (an index input out of range)"
                )));
            }
            ["error", "timer"] => {
                return Err(McuError::Report(
                    "CMSDK timer 0 does not count on this board".into(),
                ));
            }
            ["fault"] => {
                return Err(McuError::Report(
                    "the firmware took a HardFault".to_string(),
                ));
            }
            ["done"] => done = true,
            _ => {}
        }
    }
    let Some(runs) = expected_runs else {
        return Err(McuError::Report(format!(
            "no header line in the output:\n{}",
            out.trim()
        )));
    };
    if !done {
        return Err(McuError::Report(format!(
            "the firmware stopped before the end of its report:\n{}",
            out.trim()
        )));
    }
    for r in 1..=runs {
        let pick = |list: &[(usize, usize, Mark)], slots: usize| -> Result<Vec<Mark>> {
            (0..slots)
                .map(|s| {
                    list.iter()
                        .find(|(rr, ss, _)| *rr == r && *ss == s)
                        .map(|e| e.2)
                        .ok_or_else(|| McuError::Report(format!("run {r}: slot {s} missing")))
                })
                .collect()
        };
        let m = pick(&meas, 2)?;
        let profile = if prof.is_empty() {
            vec![]
        } else {
            pick(&prof, rep.steps + 1)?
        };
        let span = m[1]
            .entry
            .checked_sub(m[0].exit + MEASURE_OVERHEAD)
            .ok_or_else(|| McuError::Report(format!("run {r}: marks out of order")))?;
        let ordered = profile.windows(2).all(|w| w[0].exit <= w[1].entry)
            && profile.first().is_none_or(|p| p.entry >= m[0].exit)
            && profile.last().is_none_or(|p| p.exit <= m[1].entry);
        if !ordered {
            return Err(McuError::Report(format!(
                "run {r}: profile marks out of order"
            )));
        }
        rep.runs.push(Run {
            instructions: span,
            marks: [m[0], m[1]],
            profile,
        });
    }
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as the firmware would store it for a mark whose entry is
    /// at instruction `entry` on a timer whose ticks fall on multiples of
    /// 40 (a simulation of the mark's instruction layout).
    fn simulate(entry: u64) -> [u32; 7] {
        let read = |t: u64| u32::MAX - (t / TICK) as u32;
        let mut t = entry + 6; // the first read, v0
        let v0 = read(t);
        t += 2; // movs, then the loop's first read
        let mut n = 0;
        let vk = loop {
            n += 1;
            let v = read(t);
            if v != v0 {
                break v;
            }
            t += 4;
        };
        let w: Vec<u32> = (0..5).map(|i| read(t + 36 + i)).collect();
        [w[4], w[0], n, vk, w[1], w[2], w[3]]
    }

    #[test]
    fn simulated_marks_decode_to_their_entry_and_exit() {
        let mut phases = [false; 5];
        for entry in 1000..1200 {
            let m = Mark::decode(simulate(entry)).unwrap();
            assert_eq!(m.entry, entry, "entry {entry}");
            // The exit follows the entry by the mark's own length.
            let (n, len) = (simulate(entry)[2] as u64, m.exit - m.entry);
            assert_eq!(len, 8 + 4 * n + 32 + 5 + 2, "entry {entry}");
            phases[m.phase as usize] = true;
        }
        assert_eq!(phases, [false, true, true, true, true]);
    }

    #[test]
    fn readings_that_are_not_one_tick_apart_are_refused() {
        let mut r = simulate(1000);
        r[1] = r[1].wrapping_add(5); // w0 no longer the value before the tick
        let e = Mark::decode(r).unwrap_err().to_string();
        assert!(e.contains("-icount"), "{e}");
        let mut r = simulate(1000);
        r[0] = r[0].wrapping_sub(3);
        assert!(Mark::decode(r).is_err());
    }

    fn line(tag: char, run: usize, slot: usize, r: [u32; 7]) -> String {
        let w: Vec<String> = r.iter().map(|x| format!("{x:x}")).collect();
        format!("{tag} {run} {slot} {}\n", w.join(" "))
    }

    #[test]
    fn a_report_gives_instructions_per_run_and_step() {
        // measure's first mark at 1000; fn's first instruction 4 after its
        // exit; begin hook, 2 steps, and measure's second mark.
        let m0 = Mark::decode(simulate(1000)).unwrap();
        let p0 = Mark::decode(simulate(m0.exit + 20)).unwrap();
        let p1 = Mark::decode(simulate(p0.exit + 500)).unwrap();
        let p2 = Mark::decode(simulate(p1.exit + 300)).unwrap();
        let m1 = Mark::decode(simulate(p2.exit + 9)).unwrap();
        let mut out = String::from("nnc-mcu 1 runs 1 steps 2\n");
        out += &line('M', 1, 0, simulate(1000));
        out += &line('M', 1, 1, simulate(p2.exit + 9));
        for (s, at) in [m0.exit + 20, p0.exit + 500, p1.exit + 300]
            .into_iter()
            .enumerate()
        {
            out += &line('P', 1, s, simulate(at));
        }
        out += "check 0 10 0 1.5e-06 2e-07 0\ndone\n";
        let rep = parse(&out).unwrap();
        assert_eq!(rep.runs.len(), 1);
        let r = &rep.runs[0];
        assert_eq!(r.steps(), vec![500, 300]);
        assert_eq!(
            r.instructions,
            m1.entry - m0.exit - MEASURE_OVERHEAD,
            "whole run"
        );
        assert_eq!(
            r.instructions,
            20 + 500 + 300 + 9 + r.hooks() - MEASURE_OVERHEAD
        );
        assert_eq!(rep.checks[0].mismatches, 0);
        assert_eq!(rep.checks[0].max_abs, 1.5e-6);
    }

    #[test]
    fn incomplete_or_failing_reports_are_errors() {
        assert!(parse("").unwrap_err().to_string().contains("no header"));
        let e = parse("nnc-mcu 1 runs 1 steps 0\n").unwrap_err().to_string();
        assert!(e.contains("stopped before the end"), "{e}");
        let e = parse("nnc-mcu 1 runs 1 steps 0\nerror run 0 rc 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("returned 1"), "{e}");
        let e = parse("nnc-mcu 1 runs 1 steps 0\nfault\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("HardFault"), "{e}");
        let e = parse("nnc-mcu 1 runs 1 steps 0\ndone\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("slot 0 missing"), "{e}");
    }
}
