//! Integer requantization and fixed-point arithmetic, exactly as TensorFlow
//! Lite and CMSIS-NN compute them (single rounding for requantization,
//! gemmlowp's fixed point for softmax), so integer kernels reproduce their
//! reference outputs bit for bit. Every function here has
//! one definition; the interpreter calls it, and the C and Cranelift
//! kernels render the same operations.

/// A real multiplier `m` as a Q31 fixed-point `multiplier` and a power-of-
/// two `shift`: `m ~= multiplier * 2^(shift - 31)` (TFLite's
/// `QuantizeMultiplier`: the significand rounded half away from zero).
pub fn quantize_multiplier(m: f64) -> (i32, i32) {
    if m == 0.0 || !m.is_finite() {
        return (0, 0);
    }
    let (q, mut shift) = frexp(m);
    let mut q_fixed = (q * (1i64 << 31) as f64).round() as i64;
    if q_fixed == 1i64 << 31 {
        q_fixed /= 2;
        shift += 1;
    }
    if shift < -31 {
        return (0, 0);
    }
    (q_fixed as i32, shift)
}

/// [`quantize_multiplier`] for a multiplier a requantization can apply:
/// positive, finite and below `2^30` (`None` otherwise, and the rewrite
/// that wanted it keeps the float form).
pub fn checked_multiplier(m: f64) -> Option<(i32, i32)> {
    if !(m > 0.0 && m.is_finite()) {
        return None;
    }
    let (q, s) = quantize_multiplier(m);
    (s <= MAX_SHIFT).then_some((q, s))
}

/// `x = q * 2^e` with `|q|` in `[0.5, 1)`, like C's `frexp`.
fn frexp(x: f64) -> (f64, i32) {
    if x == 0.0 || !x.is_finite() {
        return (x, 0);
    }
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    if exp == 0 {
        // Subnormal: scale into the normal range first.
        let (q, e) = frexp(x * (1u64 << 54) as f64);
        return (q, e - 54);
    }
    let e = exp - 1022;
    let q = f64::from_bits((bits & !(0x7ffu64 << 52)) | (1022u64 << 52));
    (q, e)
}

/// gemmlowp's `SaturatingRoundingDoublingHighMul`: the high 32 bits of
/// `2 * a * b`, rounded to nearest (ties away from zero).
pub fn srdhm(a: i32, b: i32) -> i32 {
    if a == b && a == i32::MIN {
        return i32::MAX;
    }
    let ab = a as i64 * b as i64;
    let nudge: i64 = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
    ((ab + nudge) / (1i64 << 31)) as i32
}

/// gemmlowp's `RoundingDivideByPOT`: `x / 2^exponent` rounded to nearest,
/// ties away from zero.
pub fn rounding_divide_by_pot(x: i32, exponent: i32) -> i32 {
    if exponent <= 0 {
        return x;
    }
    let e = exponent.min(31);
    let mask = ((1i64 << e) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + i32::from(x < 0);
    (x >> e) + i32::from(remainder > threshold)
}

/// The largest shift a requantization takes: `multiplier * 2^(shift - 31)`
/// stays below `2^30`, the range TFLite accepts.
pub const MAX_SHIFT: i32 = 30;
/// The smallest shift (below it the multiplier rounds to zero).
pub const MIN_SHIFT: i32 = -31;

/// TFLite's `MultiplyByQuantizedMultiplier` with single rounding
/// (`TFLITE_SINGLE_ROUNDING`, CMSIS-NN's `CMSIS_NN_USE_SINGLE_ROUNDING`):
/// `acc * multiplier * 2^(shift - 31)` in 64 bits, rounded once to nearest
/// with ties toward positive infinity, saturated to 32 bits. `shift` is in
/// [`MIN_SHIFT`]`..=`[`MAX_SHIFT`] (the rewrites that create requantizations
/// guarantee it; outside it the shift is clamped).
pub fn requantize(acc: i32, multiplier: i32, shift: i32) -> i32 {
    let total = 31 - shift.clamp(MIN_SHIFT, MAX_SHIFT);
    let round = 1i64 << (total - 1);
    let r = (acc as i64 * multiplier as i64 + round) >> total;
    r.clamp(i32::MIN as i64, i32::MAX as i64) as i32
}

/// gemmlowp's `SaturatingRoundingMultiplyByPOT` for a left shift: `x *
/// 2^exponent`, saturating.
pub fn saturating_shl(x: i32, exponent: i32) -> i32 {
    if exponent <= 0 {
        return rounding_divide_by_pot(x, -exponent);
    }
    let threshold = ((1i64 << (31 - exponent)) - 1) as i32;
    if x > threshold {
        i32::MAX
    } else if x < -threshold {
        i32::MIN
    } else {
        x << exponent
    }
}

/// `exp(a)` for `a <= 0` in gemmlowp's fixed point: `a` with 5 integer
/// bits (Q5.26), the result with none (Q0.31).
pub fn exp_on_negative_values_q5(a: i32) -> i32 {
    const FRACTIONAL: i32 = 26;
    let one_quarter = 1i32 << (FRACTIONAL - 2);
    let mask = one_quarter - 1;
    let a_mod_quarter_minus_one_quarter = (a & mask).wrapping_sub(one_quarter);
    let mut result = exp_on_interval_between_negative_one_quarter_and_0_excl(saturating_shl(
        a_mod_quarter_minus_one_quarter,
        5,
    ));
    let remainder = a_mod_quarter_minus_one_quarter.wrapping_sub(a);
    // exp(-2^k) for the integer bits of -a, in Q0.31.
    const BARREL: [(i32, i32); 7] = [
        (-2, 1672461947),
        (-1, 1302514674),
        (0, 790015084),
        (1, 290630308),
        (2, 39332535),
        (3, 720401),
        (4, 242),
    ];
    for (exponent, multiplier) in BARREL {
        if remainder & (1 << (FRACTIONAL + exponent)) != 0 {
            result = srdhm(result, multiplier);
        }
    }
    if a == 0 { i32::MAX } else { result }
}

/// `exp(a)` for `a` in `[-1/4, 0)`, Q0.31 in and out: a Taylor expansion
/// around -1/8 (gemmlowp).
fn exp_on_interval_between_negative_one_quarter_and_0_excl(a: i32) -> i32 {
    let constant_term: i32 = 1895147668; // exp(-1/8)
    let constant_1_over_3 = 715827883;
    let x = a.wrapping_add(1 << 28);
    let x2 = srdhm(x, x);
    let x3 = srdhm(x2, x);
    let x4 = srdhm(x2, x2);
    let x4_over_4 = rounding_divide_by_pot(x4, 2);
    let poly = rounding_divide_by_pot(
        srdhm(x4_over_4.wrapping_add(x3), constant_1_over_3).wrapping_add(x2),
        1,
    );
    constant_term.wrapping_add(srdhm(constant_term, x.wrapping_add(poly)))
}

/// `1 / (1 + a)` for `a` in `(0, 1)`, Q0.31 in and out: Newton-Raphson
/// division (gemmlowp).
fn one_over_one_plus_x_for_x_in_0_1(a: i32) -> i32 {
    // RoundingHalfSum(a, One) in Q0.31.
    let sum = a as i64 + i32::MAX as i64;
    let half_denominator = ((sum + if sum >= 0 { 1 } else { -1 }) / 2) as i32;
    let c48_17: i32 = 1515870810; // 48/17 in Q2.29
    let c_neg32_17 = -1010580540; // -32/17 in Q2.29
    let one_q2 = 1i32 << 29;
    let mut x = c48_17.wrapping_add(srdhm(half_denominator, c_neg32_17));
    for _ in 0..3 {
        let half_denominator_times_x = srdhm(half_denominator, x);
        let one_minus = one_q2.wrapping_sub(half_denominator_times_x);
        x = x.wrapping_add(saturating_shl(srdhm(x, one_minus), 2));
    }
    saturating_shl(x, 1)
}

/// TFLite's `GetReciprocal`: `1 / x` for `x` with `integer_digits` integer
/// bits, as a Q0.31 value and the number of bits it is above 1.
pub fn reciprocal(x: i32, integer_digits: i32) -> (i32, i32) {
    let headroom_plus_one = (x as u32).leading_zeros() as i32;
    let num_bits_over_unit = integer_digits - headroom_plus_one;
    let shifted_sum_minus_one =
        ((x as u32).wrapping_shl(headroom_plus_one as u32)).wrapping_sub(1u32 << 31) as i32;
    (
        one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one),
        num_bits_over_unit,
    )
}

/// The integer parameters of a softmax with input scale `scale` and
/// `beta`: the multiplier and left shift that rescale input differences to
/// Q5.26, and the smallest difference that still contributes (TFLite's
/// `PreprocessSoftmaxScaling` and `CalculateInputRadius`).
pub fn softmax_params(scale: f64, beta: f64) -> (i32, i32, i32) {
    const SCALED_DIFF_INTEGER_BITS: i32 = 5;
    let max_real = (1i64 << 31) as f64 - 1.0;
    let real = (beta * scale * (1i64 << (31 - SCALED_DIFF_INTEGER_BITS)) as f64).min(max_real);
    let (multiplier, left_shift) = quantize_multiplier(real);
    let max_input_rescaled = ((1i64 << SCALED_DIFF_INTEGER_BITS) - 1) as f64
        * (1i64 << (31 - SCALED_DIFF_INTEGER_BITS)) as f64
        / (1i64 << left_shift.clamp(0, 62)) as f64;
    let diff_min = -(max_input_rescaled.floor() as i32);
    (multiplier, left_shift, diff_min)
}

/// The exponentials a quantized softmax needs, as a table indexed by
/// `max - x` (0..=255 for 8-bit inputs): `exp` of the rescaled difference
/// in Q0.31, or 0 for differences below `diff_min` (which then contribute
/// nothing to the sum and produce the output minimum, exactly as
/// [`softmax_row`] treats them). Kernels compute the softmax from it:
/// `sum += rounding_divide_by_pot(t[d], 12)`, then the [`reciprocal`] of
/// the sum, then `rounding_divide_by_pot(srdhm(scale, t[d]), bits + 23)`.
pub fn softmax_exp_table(multiplier: i32, left_shift: i32, diff_min: i32) -> Vec<i32> {
    (0..256)
        .map(|d: i32| {
            let diff = -d;
            if diff < diff_min {
                0
            } else {
                let rescaled = srdhm(
                    diff.wrapping_shl(left_shift.clamp(0, 31) as u32),
                    multiplier,
                );
                exp_on_negative_values_q5(rescaled)
            }
        })
        .collect()
}

/// A softmax probability `p * 2^-(bits + 31)` (`p` the fixed-point
/// product [`softmax_row`] forms from the reciprocal of the sum, `bits` the
/// reciprocal's integer bits) divided by an output scale whose reciprocal
/// is `mult * 2^(shift - 31)` (a Q31 multiplier), rounded once (ties up):
/// `(p * mult + 2^(t - 1)) >> t` with `t = bits + 62 - shift`. With the
/// reciprocal 256 (`mult = 2^30`, `shift = 9`) this is TFLite's
/// `RoundingDivideByPOT(p, bits + 23)` exactly (`p >= 0`); for other
/// output scales (onnxruntime's 1/255) it avoids rounding at 1/256 first.
/// `p * mult < 2^62`, so for `t > 63` the result is 0.
pub fn softmax_scaled(p: i32, bits: i32, mult: i32, shift: i32) -> i64 {
    let t = bits + 62 - shift;
    if t > 63 {
        return 0;
    }
    // `shift <= MAX_SHIFT` and `bits >= 0`, so `t >= 62 - MAX_SHIFT`.
    let q = p as i64 * mult as i64;
    (q + (1i64 << (t - 1))) >> t
}

/// The output parameters of a softmax that does not write TFLite's 1/256
/// units: the Q31 reciprocal of its scale and its zero point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftmaxOut {
    pub mult: i32,
    pub shift: i32,
    pub zp: i32,
}

/// Softmax of one row of quantized values (TFLite's integer reference):
/// `x` are integers, the result is in units of 1/256 offset by `out_min`,
/// or, with `y`, in units of the output scale `y` describes from its zero
/// point, rounded once ([`softmax_scaled`]).
pub fn softmax_row(
    x: &[i32],
    multiplier: i32,
    left_shift: i32,
    diff_min: i32,
    (out_min, out_max): (i32, i32),
    y: Option<SoftmaxOut>,
) -> Vec<i32> {
    let max = x.iter().copied().max().unwrap_or(0);
    let exp_of = |v: i32| -> Option<i32> {
        let diff = v - max;
        (diff >= diff_min).then(|| {
            let rescaled = srdhm(
                diff.wrapping_shl(left_shift.clamp(0, 31) as u32),
                multiplier,
            );
            exp_on_negative_values_q5(rescaled)
        })
    };
    // Sum in Q12.19.
    let mut sum: i32 = 0;
    for &v in x {
        if let Some(e) = exp_of(v) {
            sum = sum.wrapping_add(rounding_divide_by_pot(e, 12));
        }
    }
    let (shifted_scale, num_bits_over_unit) = reciprocal(sum, 12);
    let zero = y.map_or(out_min, |y| y.zp.clamp(out_min, out_max));
    x.iter()
        .map(|&v| match exp_of(v) {
            Some(e) => {
                let p = srdhm(shifted_scale, e);
                match y {
                    None => {
                        let unsat = rounding_divide_by_pot(p, num_bits_over_unit + 31 - 8);
                        (unsat + out_min).clamp(out_min, out_max)
                    }
                    Some(y) => {
                        let v = softmax_scaled(p, num_bits_over_unit, y.mult, y.shift);
                        (v + y.zp as i64).clamp(out_min as i64, out_max as i64) as i32
                    }
                }
            }
            None => zero,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipliers_round_trip() {
        for m in [0.5, 0.75, 1.0, 1.5, 0.0003, 2.5e-7, 123.4] {
            let (q, s) = quantize_multiplier(m);
            let back = q as f64 * 2f64.powi(s - 31);
            assert!(((back - m) / m).abs() < 1e-9, "{m}: {q} {s} -> {back}");
            assert!((1 << 30..=i32::MAX).contains(&q), "{m}: {q}");
        }
        assert_eq!(quantize_multiplier(0.0), (0, 0));
        // A significand that rounds up to 1.0 moves into the next octave.
        assert_eq!(quantize_multiplier(1.0 - 1e-12), (1 << 30, 1));
    }

    #[test]
    fn rounding_matches_tflite() {
        assert_eq!(rounding_divide_by_pot(5, 1), 3);
        assert_eq!(rounding_divide_by_pot(-5, 1), -3);
        assert_eq!(rounding_divide_by_pot(4, 1), 2);
        assert_eq!(rounding_divide_by_pot(6, 2), 2);
        assert_eq!(rounding_divide_by_pot(-6, 2), -2);
        assert_eq!(srdhm(i32::MIN, i32::MIN), i32::MAX);
        assert_eq!(srdhm(1 << 30, 1 << 30), 1 << 29);
        // 100 * 0.75 = 75; 101 * 0.75 = 75.75 -> 76.
        let (q, s) = quantize_multiplier(0.75);
        assert_eq!(requantize(100, q, s), 75);
        assert_eq!(requantize(101, q, s), 76);
        assert_eq!(requantize(-101, q, s), -76);
        let (q, s) = quantize_multiplier(3.0);
        assert_eq!(requantize(-7, q, s), -21);
        // Single rounding: ties go toward positive infinity.
        let (q, s) = quantize_multiplier(0.5);
        assert_eq!(requantize(1, q, s), 1);
        assert_eq!(requantize(-1, q, s), 0);
        assert_eq!(requantize(-3, q, s), -1);
        // Products beyond 32 bits saturate.
        let (q, s) = quantize_multiplier(1e9);
        assert_eq!(requantize(i32::MAX, q, s), i32::MAX);
        assert_eq!(checked_multiplier(1e10), None);
        assert_eq!(checked_multiplier(-0.5), None);
        assert_eq!(checked_multiplier(0.5), Some((1 << 30, 0)));
    }

    #[test]
    fn softmax_from_the_table_matches_the_reference() {
        let (m, sh, dmin) = softmax_params(0.09, 1.0);
        let t = softmax_exp_table(m, sh, dmin);
        let mut seed = 12345u32;
        for _ in 0..200 {
            let row: Vec<i32> = (0..10)
                .map(|_| {
                    seed = seed.wrapping_mul(1103515245).wrapping_add(12345);
                    (seed >> 16) as i32 % 256 - 128
                })
                .collect();
            let want = softmax_row(&row, m, sh, dmin, (-128, 127), None);
            let max = *row.iter().max().unwrap();
            let sum = row.iter().fold(0i32, |s, &v| {
                s.wrapping_add(rounding_divide_by_pot(t[(max - v) as usize], 12))
            });
            let (scale, bits) = reciprocal(sum, 12);
            let got: Vec<i32> = row
                .iter()
                .map(|&v| {
                    let e = t[(max - v) as usize];
                    (rounding_divide_by_pot(srdhm(scale, e), bits + 23) - 128).clamp(-128, 127)
                })
                .collect();
            assert_eq!(got, want, "{row:?}");
        }
    }

    #[test]
    fn fixed_point_exp_and_reciprocal_are_accurate() {
        for k in 0..200 {
            let a = -k * (1 << 20); // -k/64 in Q5.26
            let e = exp_on_negative_values_q5(a) as f64 / 2f64.powi(31);
            let want = (-(k as f64) / 64.0).exp();
            assert!((e - want).abs() < 2e-6, "exp(-{k}/64) = {e}, want {want}");
        }
        // 1 / 3.5 with 12 integer bits.
        let x = (3.5 * 2f64.powi(19)) as i32;
        let (r, over) = reciprocal(x, 12);
        let got = r as f64 / 2f64.powi(31) / 2f64.powi(over);
        assert!((got - 1.0 / 3.5).abs() < 1e-6, "{got}");
    }

    #[test]
    fn the_scaled_softmax_output_rounds_once() {
        let (m, s, d) = softmax_params(0.1, 1.0);
        let mut r = 12345u64;
        for n in [2usize, 3, 10, 12, 100, 1000] {
            let x: Vec<i32> = (0..n)
                .map(|_| {
                    r = r.wrapping_mul(6364136223846793005).wrapping_add(1);
                    ((r >> 33) % 256) as i32 - 128
                })
                .collect();
            // The reciprocal 256 is TFLite's own output, bit for bit.
            let (q, sh) = quantize_multiplier(256.0);
            let y256 = SoftmaxOut {
                mult: q,
                shift: sh,
                zp: -128,
            };
            let tflite = softmax_row(&x, m, s, d, (-128, 127), None);
            assert_eq!(softmax_row(&x, m, s, d, (-128, 127), Some(y256)), tflite);
            // 1/255 from zero point 0 (uint8): within rounding of the
            // real softmax, where 1/256 then 1/255 can be a unit further.
            let (q, sh) = quantize_multiplier(255.0);
            let y = SoftmaxOut {
                mult: q,
                shift: sh,
                zp: 0,
            };
            let got = softmax_row(&x, m, s, d, (0, 255), Some(y));
            let mx = *x.iter().max().unwrap();
            let ex: Vec<f64> = x.iter().map(|&v| (0.1 * (v - mx) as f64).exp()).collect();
            let sum: f64 = ex.iter().sum();
            for (g, e) in got.iter().zip(&ex) {
                let want = e / sum * 255.0;
                assert!(
                    (*g as f64 - want).abs() <= 0.5 + 1e-4,
                    "n {n}: {g} vs {want}"
                );
            }
        }
    }

    #[test]
    fn softmax_rows_sum_to_one() {
        let (m, s, d) = softmax_params(0.1, 1.0);
        let x: Vec<i32> = vec![-128, -20, 0, 5, 30, 127];
        let y = softmax_row(&x, m, s, d, (-128, 127), None);
        let probs: Vec<f64> = y.iter().map(|&v| (v + 128) as f64 / 256.0).collect();
        let ex: Vec<f64> = x.iter().map(|&v| (0.1 * (v - 127) as f64).exp()).collect();
        let sum: f64 = ex.iter().sum();
        for (p, e) in probs.iter().zip(&ex) {
            assert!((p - e / sum).abs() <= 1.0 / 256.0 + 1e-9, "{probs:?}");
        }
    }
}
