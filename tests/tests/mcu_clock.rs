//! Calibration of the firmware instruction clock (`runtime/mcu/nnc_mcu_clock.S`,
//! decoded by `nnc::mcu::clock`): hand-written loops of a known number of
//! instructions, measured through the same path as a model
//! (`nnc_mcu_measure` and the `NNC_PROFILE` hooks), must come out exact
//! on every board. Also: a hung firmware ends in a timeout error, a
//! faulting one in an error that says so.
//!
//! The toolchain and QEMU come from `scripts/setup.sh`.

use std::time::Duration;

use nnc::mcu::clock::{self, Report};
use nnc::mcu::firmware::{self, Source};
use nnc::mcu::{Core, McuError, Toolchain};

/// `loop_K_R(inputs, outputs, arena)`: executes exactly 3 + K * R
/// instructions from its first instruction to its return: `ldr` of the
/// count, R iterations of (K - 2 nops, subs, bne), `movs`, `bx lr`.
fn loop_fn(k: u32, r: u32) -> String {
    format!(
        "    .global loop_{k}_{r}\n    .type loop_{k}_{r}, %function\n    .thumb_func\n    .align 2\nloop_{k}_{r}:\n    ldr r3, ={r}\n1:\n    .rept {}\n    nop\n    .endr\n    subs r3, r3, #1\n    bne 1b\n    movs r0, #0\n    bx lr\n    .ltorg\n",
        k - 2
    )
}

/// The loop bodies (K, R). K = 3 .. 44 moves the end of the loop through
/// every phase of the 40-instruction timer tick.
const LOOPS: [(u32, u32); 12] = [
    (3, 1),
    (4, 1),
    (5, 1000),
    (7, 333),
    (13, 12345),
    (40, 3),
    (41, 7),
    (42, 1),
    (43, 99),
    (44, 2),
    (6, 250_000),
    (11, 1),
];

fn measure_loops(core: Core, tools: &Toolchain) -> Vec<(u64, Report)> {
    let mut asm = String::from("    .syntax unified\n    .thumb\n    .text\n");
    let mut main = String::from("#include \"nnc_mcu.h\"\n");
    let mut calls = String::new();
    for (k, r) in LOOPS {
        asm.push_str(&loop_fn(k, r));
        main.push_str(&format!(
            "int loop_{k}_{r}(const void *const *i, void *const *o, void *a);\n"
        ));
        calls.push_str(&format!(
            "    {{\n        static const struct nnc_mcu_bench b = {{loop_{k}_{r}, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0}};\n        if (nnc_mcu_bench_main(&b) != 0) return 1;\n    }}\n"
        ));
    }
    main.push_str(&format!("int main(void) {{\n{calls}    return 0;\n}}\n"));
    let fw = firmware::build(
        core,
        tools,
        "calibration",
        &[
            Source::new("loops.S", asm, false),
            Source::new("main.c", main, false),
        ],
        &[],
    )
    .unwrap_or_else(|e| panic!("{}: {e}", core.name()));
    let out = firmware::run(tools, &fw, Duration::from_secs(120)).unwrap();
    assert_eq!(out.code, Some(0), "{}: {out:?}", core.name());
    // One report per loop, each ending in `done`.
    let mut reports = Vec::new();
    let mut part = String::new();
    for l in out.stdout.lines() {
        part.push_str(l);
        part.push('\n');
        if l == "done" {
            reports.push(clock::parse(&part).unwrap());
            part.clear();
        }
    }
    assert_eq!(reports.len(), LOOPS.len(), "{}", out.stdout);
    LOOPS
        .iter()
        .zip(reports)
        .map(|(&(k, r), rep)| (3 + u64::from(k) * u64::from(r), rep))
        .collect()
}

#[test]
fn known_loops_measure_exactly_on_every_board() {
    let tools = Toolchain::find().expect("run scripts/setup.sh");
    for core in [Core::M4, Core::M7, Core::M0] {
        let mut phases = [false; 5];
        for (want, rep) in measure_loops(core, &tools) {
            assert_eq!(rep.runs.len(), 3);
            for run in &rep.runs {
                assert_eq!(
                    run.instructions,
                    want,
                    "{}: measured {} for a loop of {want} instructions",
                    core.name(),
                    run.instructions
                );
                for m in run.marks {
                    phases[m.phase as usize] = true;
                }
            }
        }
        // Every window position of the vernier was exercised.
        assert_eq!(
            phases,
            [false, true, true, true, true],
            "{}: phases seen {phases:?}",
            core.name()
        );
    }
}

/// A fake model entry point calling the profile hooks the way generated C
/// does, around loops of known length: each step counts from the exit of
/// the previous hook to the entry of its own, so step i is its loop
/// (3 + K * R) plus its hook call (`movs r0, #i`; `bl`), minus the loop's
/// own `movs`/`bx` (absent here) plus its `ldr`.
const PROFILED: &str = r#"
    .syntax unified
    .thumb
    .text
    .global fake_run
    .type fake_run, %function
    .thumb_func
    .align 2
fake_run:
    push {r4, lr}
    bl nnc_profile_begin
    ldr r3, =1000
1:  nop
    nop
    nop
    subs r3, r3, #1
    bne 1b
    movs r0, #0
    bl nnc_profile_step
    ldr r3, =77
1:  .rept 38
    nop
    .endr
    subs r3, r3, #1
    bne 1b
    movs r0, #1
    bl nnc_profile_step
    movs r0, #0
    pop {r4, pc}
    .ltorg
"#;

#[test]
fn profile_hooks_attribute_every_instruction() {
    let tools = Toolchain::find().expect("run scripts/setup.sh");
    let main = "#include \"nnc_mcu.h\"\nint fake_run(const void *const *i, void *const *o, void *a);\nuint32_t nnc_mcu_prof[3 * 8];\nint main(void) {\n    static const struct nnc_mcu_bench b = {fake_run, 0, 0, 0, 0, 0, 2, 2, 0, 0, 0};\n    return nnc_mcu_bench_main(&b);\n}\n";
    for core in [Core::M4, Core::M0] {
        let fw = firmware::build(
            core,
            &tools,
            "calibration-profile",
            &[
                Source::new("fake.S", PROFILED, false),
                Source::new("main.c", main, false),
            ],
            &["NNC_PROFILE"],
        )
        .unwrap();
        let out = firmware::run(&tools, &fw, Duration::from_secs(60)).unwrap();
        let rep = clock::parse(&out.stdout).unwrap();
        assert_eq!(rep.runs.len(), 2);
        for r in &rep.runs {
            // ldr + 1000 x 5 + movs + bl; ldr + 77 x 40 + movs + bl.
            assert_eq!(r.steps(), vec![3 + 5000, 3 + 77 * 40], "{}", core.name());
            // push, bl begin, the steps, the hooks, movs, pop.
            assert_eq!(
                r.instructions,
                2 + r.steps().iter().sum::<u64>() + r.hooks() + 2,
                "{}",
                core.name()
            );
        }
    }
}

#[test]
fn hung_and_faulting_firmware_are_errors() {
    let tools = Toolchain::find().expect("run scripts/setup.sh");
    let hang = "int main(void) {\n    for (;;) {\n    }\n}\n";
    let fw = firmware::build(
        Core::M4,
        &tools,
        "hang",
        &[Source::new("main.c", hang, false)],
        &[],
    )
    .unwrap();
    let e = firmware::run(&tools, &fw, Duration::from_secs(2)).unwrap_err();
    assert!(matches!(e, McuError::Timeout { .. }), "{e}");
    assert!(e.to_string().contains("did not finish in 2 s"), "{e}");
    // An undefined instruction: a UsageFault, escalated to HardFault.
    let fault = "#include <stdio.h>\nint main(void) {\n    printf(\"nnc-mcu 1 runs 1 steps 0\\n\");\n    __asm volatile(\"udf #0\");\n    return 0;\n}\n";
    let fw = firmware::build(
        Core::M4,
        &tools,
        "fault",
        &[Source::new("main.c", fault, false)],
        &[],
    )
    .unwrap();
    let out = firmware::run(&tools, &fw, Duration::from_secs(20)).unwrap();
    let e = clock::parse(&out.stdout).unwrap_err();
    assert!(e.to_string().contains("HardFault"), "{e}: {out:?}");
}
