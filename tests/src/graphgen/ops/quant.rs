//! The integer ops of the generator.

use super::*;

impl Gen {
    /// Quantization parameters of an integer op on `x`: zero points as
    /// `quantize` draws them, an i8 or u8 output, sometimes a fused clamp.
    fn qparams(&mut self, x: DType, w_zp: i32) -> nnc_ir::op::QParams {
        let zp = |r: &mut super::super::Rng, d: DType| {
            if d == DType::I8 {
                r.int(-20, 20) as i32
            } else {
                r.int(100, 160) as i32
            }
        };
        let out = self.r.pick(&[DType::I8, DType::U8]);
        let x_zp = zp(&mut self.r, x);
        let y_zp = zp(&mut self.r, out);
        let (lo, hi) = out.int_range().expect("8-bit");
        let lo = if self.r.one_in(3) { y_zp as i64 } else { lo };
        nnc_ir::op::QParams {
            x_zp,
            w_zp,
            y_zp,
            lo: lo as i32,
            hi: hi as i32,
            out,
        }
    }

    /// Weights, bias, multipliers and shifts of an integer op with
    /// `m` output channels and `fan_in` products per output: int8 weights
    /// (or uint8 with a zero point), shifts that bring the accumulators
    /// near the output range (mostly multipliers below one, sometimes
    /// above).
    fn qweights(&mut self, dims: Vec<usize>, m: usize, fan_in: usize) -> (Vec<Value>, i32) {
        let (wd, w_zp, d) = if self.r.one_in(4) {
            (DType::U8, self.r.int(120, 135) as i32, Draw::Int(0, 255))
        } else {
            (DType::I8, 0, Draw::Int(-127, 127))
        };
        let computed = if self.r.one_in(8) { 1 } else { 1000 };
        let w = self.operand(wd, dims, d, computed);
        let bias = self.konst_drawn(DType::I32, vec![m], Draw::Int(-3000, 3000));
        let per = if self.r.one_in(2) { m } else { 1 };
        let mult = self.konst_drawn(DType::I32, vec![per], Draw::Int(1 << 30, i32::MAX as i64));
        let bits = 64 - (fan_in.max(1) as u64).leading_zeros() as i64;
        let base = -(6 + bits);
        let shifts: Vec<i64> = (0..per)
            .map(|_| {
                if self.r.one_in(10) {
                    1
                } else {
                    base + self.r.int(-1, 1)
                }
            })
            .collect();
        let shift = self.konst(Tensor::from_i64(DType::I32, vec![per], shifts).expect("shape"));
        (vec![w, bias, mult, shift], w_zp)
    }

    /// A quantized convolution (regular, grouped or depthwise) of an 8-bit
    /// image.
    pub(in crate::graphgen) fn qconv(&mut self, v: Value, depthwise: bool) -> Option<Value> {
        let ty = self.ty(v);
        if !matches!(ty.dtype, DType::I8 | DType::U8) || !(3..=4).contains(&ty.rank()) {
            return None;
        }
        let c = ty.dims[1];
        let spatial = ty.dims[2..].to_vec();
        let (k, s, d, p) = self.window(&spatial, 5);
        let group = match (depthwise, self.r.below(4)) {
            (true, _) => c,
            (false, 0) if c.is_multiple_of(2) => 2,
            _ => 1,
        };
        let m = if depthwise {
            c
        } else {
            group * self.r.pick(&[1, 2, 3, 4, 5, 8, 12, 16])
        };
        let mut a = ConvAttrs::new(spatial.len());
        a.strides = s;
        a.dilations = d;
        a.pads = p;
        a.group = group;
        let fan_in = (c / group) * k.iter().product::<usize>();
        let (ws, w_zp) = self.qweights([vec![m, c / group], k].concat(), m, fan_in);
        let q = self.qparams(ty.dtype, w_zp);
        let ins = [vec![v], ws].concat();
        self.add(Op::QConv(nnc_ir::op::QConvAttrs { conv: a, q }), &ins, true)
    }

    /// A quantized matrix product of an 8-bit value as a matrix.
    pub(in crate::graphgen) fn qgemm(&mut self, v: Value) -> Option<Value> {
        if !matches!(self.ty(v).dtype, DType::I8 | DType::U8) {
            return None;
        }
        let x = self.as_matrix(v)?;
        let ty = self.ty(x);
        let k = ty.dims[1];
        if k > 1024 {
            return None;
        }
        let n = self.r.pick(&[1, 3, 4, 5, 8, 10, 16, 17, 33]);
        let trans_b = self.r.one_in(2);
        let bdims = if trans_b { vec![n, k] } else { vec![k, n] };
        let (ws, w_zp) = self.qweights(bdims, n, k);
        let q = self.qparams(ty.dtype, w_zp);
        let ins = [vec![x], ws].concat();
        self.add(Op::QGemm(nnc_ir::op::QGemmAttrs { trans_b, q }), &ins, true)
    }
}
