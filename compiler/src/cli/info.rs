//! `nnc info`: model statistics and the memory report.

use super::*;

use nnc_passes::lower::plan::human_bytes;

pub(super) fn cmd_info(a: InfoArgs) -> Result<ExitCode> {
    let model = read_model(&a.model.model)?;
    if let Some(f) = &a.memory_svg {
        refuse_inputs(f, &command_inputs(&model, &[]))?;
    }
    let fit = FitRequest::of(&a.fit, &a.kernel)?;
    let (g, fitted) = load_model_fit(
        &model,
        &a.model,
        &HashMap::new(),
        false,
        &a.target.c()?,
        fit.as_ref(),
    )?;
    let (memory, failures) = memory_report(&a, &g)?;
    let s = nnc_ir::stats::stats(&g);
    let inputs: Vec<_> = (0..g.inputs().len())
        .map(|i| {
            let t = g.input_type(i);
            json!({"name": g.input_name(i), "dtype": t.dtype.name(), "shape": t.dims})
        })
        .collect();
    let outputs: Vec<_> = g
        .outputs()
        .iter()
        .map(|o| {
            let t = g.value_type(o.value);
            json!({"name": o.name, "dtype": t.dtype.name(), "shape": t.dims})
        })
        .collect();
    if a.json {
        let v = json!({
            "model": a.model.model.display().to_string(),
            "opt_level": a.model.opt.to_string(),
            "inputs": inputs,
            "outputs": outputs,
            "nodes": s.nodes,
            "ops": s.ops,
            "params": s.params,
            "param_bytes": s.param_bytes,
            "macs": s.macs,
            "integer_nodes": s.integer_nodes,
            "float_nodes": s.float_nodes.iter().map(|(op, name)| json!({"op": op, "name": name})).collect::<Vec<_>>(),
            "activation_bytes": s.activation_bytes,
            "largest_activation_bytes": s.largest_activation_bytes,
            "memory": memory,
        });
        let mut v = v;
        if let Some(f) = &fitted {
            v["prune_to_fit"] = f.json();
        }
        outln!("{}", serde_json::to_string_pretty(&v)?);
        if let Some(f) = failures.first() {
            bail!("{f}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    outln!("model:       {} ({})", a.model.model.display(), a.model.opt);
    for i in 0..g.inputs().len() {
        outln!("input:       {}: {}", g.input_name(i), g.input_type(i));
    }
    for o in g.outputs() {
        outln!("output:      {}: {}", o.name, g.value_type(o.value));
    }
    let mut ops: Vec<(&String, &usize)> = s.ops.iter().collect();
    ops.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let hist: Vec<String> = ops.iter().map(|(k, v)| format!("{k} {v}")).collect();
    outln!("nodes:       {}", s.nodes);
    outln!("ops:         {}", hist.join(", "));
    outln!("arithmetic:  {}", arithmetic(&s));
    outln!("parameters:  {} ({})", s.params, human_bytes(s.param_bytes));
    outln!("MACs:        {} ({:.2} M)", s.macs, s.macs as f64 / 1e6);
    outln!(
        "activations: {} total, largest tensor {}",
        human_bytes(s.activation_bytes),
        human_bytes(s.largest_activation_bytes)
    );
    print_memory(&a, &memory)?;
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    Ok(ExitCode::SUCCESS)
}

/// Integer or float: a quantized model lists the float islands that
/// remain (ops with no integer kernel, computed between a dequantize and a
/// quantize).
fn arithmetic(s: &nnc_ir::stats::GraphStats) -> String {
    const QUANTIZED: [&str; 9] = [
        "qconv",
        "qgemm",
        "qadd",
        "qmul",
        "requant",
        "lut",
        "qsoftmax",
        "quantize",
        "dequantize",
    ];
    let f = &s.float_nodes;
    let quantized = QUANTIZED.iter().any(|q| s.ops.contains_key(*q));
    match (s.integer_nodes, f.len()) {
        (_, 0) => format!("integer only ({} nodes)", s.integer_nodes),
        (_, n) if !quantized => format!("float ({n} nodes)"),
        (i, n) => {
            let list: Vec<String> = f
                .iter()
                .map(|(op, name)| format!("{op} `{name}`"))
                .collect();
            format!("{i} integer nodes, {n} float: {}", list.join(", "))
        }
    }
}

fn fmt_bytes(b: usize) -> String {
    format!("{b} B ({})", human_bytes(b))
}

/// The memory section of `nnc info`: plan numbers, budgets, per-step live bytes.
pub(super) fn memory_report(a: &InfoArgs, g: &Graph) -> Result<(serde_json::Value, Vec<String>)> {
    let p = emit::lower_unchecked(g, "model", &a.target.c()?, &a.kernel)?;
    let s = &p.stats;
    if let Some(f) = &a.memory_svg {
        create_parent(f)?;
        nnc::outfile::write(f, nnc::memsvg::render(&p, a.kernel.sram_budget).as_bytes())?;
    }
    let mut failures = Vec::new();
    if let Some(msg) = a
        .kernel
        .sram_budget
        .and_then(|b| nnc_passes::lower::plan::over_budget(&p, b))
    {
        failures.push(msg);
    }
    if let Some(b) = a.flash_budget
        && p.weight_bytes() > b
    {
        failures.push(format!(
            "the weights do not fit: they need {}, the flash budget is {}",
            fmt_bytes(p.weight_bytes()),
            fmt_bytes(b)
        ));
    }
    let steps: Vec<serde_json::Value> = p
        .steps
        .iter()
        .zip(&s.live_bytes)
        .map(|(st, live)| {
            json!({
                "op": st.op.name(),
                "kernel": st.kernel.to_string(),
                "name": st.name,
                "output": st.outputs.first().map(|b| b.ty.to_string()),
                "live_bytes": live,
                "scratch_bytes": nnc_ir::program::tiles::scratch_bytes(st),
                "in_place": st.in_place,
            })
        })
        .collect();
    let peak = p.steps.get(s.peak_step);
    // The largest kernel scratch on the stack (steps run one at a time).
    let scratch = p
        .steps
        .iter()
        .enumerate()
        .map(|(i, st)| (nnc_ir::program::tiles::scratch_bytes(st), i))
        .max_by_key(|&(b, i)| (b, std::cmp::Reverse(i)))
        .filter(|&(b, _)| b > 0);
    let v = json!({
        "target": a.target.0.to_string(),
        "arena_bytes": p.arena_bytes,
        "greedy_by_size_bytes": s.greedy_bytes,
        "naive_bytes": s.naive_bytes,
        "weight_bytes": p.weight_bytes(),
        "schedule": s.order,
        "in_place_steps": s.in_place_steps,
        "unpartitioned_bytes": s.unpartitioned_bytes,
        "streamed_chains": s.chains.len(),
        "row_copy_bytes": s.chains.iter().map(|c| c.copied_bytes).sum::<usize>(),
        "tiling_extra_macs": s.chains.iter().map(|c| c.extra_macs).sum::<u64>(),
        "max_recompute_percent": a.kernel.max_recompute,
        "channel_split": s.channel_split.as_ref().map(|c| json!({
            "kept": c.kept,
            "arena_without_bytes": c.arena_without,
            "arena_with_bytes": c.arena_with,
            "candidates": c.candidates,
            "macs_without": c.macs_without,
            "macs_with": c.macs_with,
            "millis": c.millis,
            "extract_millis": c.extract_millis,
            "summary": c.summary(),
            "chains": c.splits.iter().map(|x| json!({
                "kind": x.kind,
                "slices": x.slices,
                "names": x.names,
            })).collect::<Vec<_>>(),
        })),
        "peak_step": s.peak_step,
        "peak_step_op": peak.map(|st| st.op.name()),
        "peak_step_name": peak.map(|st| st.name.clone()),
        "scratch_bytes": scratch.map_or(0, |(b, _)| b),
        "scratch_step": scratch.map(|(_, i)| i),
        "steps": steps,
        "fits": failures.is_empty(),
    });
    Ok((v, failures))
}

pub(super) fn print_memory(a: &InfoArgs, v: &serde_json::Value) -> Result<()> {
    let u = |k: &str| v[k].as_u64().unwrap_or(0) as usize;
    outln!("memory plan ({}):", v["target"].as_str().unwrap_or(""));
    outln!(
        "  arena:          {}  (schedule: {}, {} steps in place)",
        fmt_bytes(u("arena_bytes")),
        v["schedule"].as_str().unwrap_or(""),
        u("in_place_steps")
    );
    outln!("  greedy-by-size: {}", fmt_bytes(u("greedy_by_size_bytes")));
    if u("streamed_chains") > 0 || u("unpartitioned_bytes") != u("arena_bytes") {
        outln!(
            "  partial exec.:  {} before, {} streamed chain(s), {} of row copies per inference",
            fmt_bytes(u("unpartitioned_bytes")),
            u("streamed_chains"),
            fmt_bytes(u("row_copy_bytes"))
        );
        let cap = v["max_recompute_percent"].as_f64().unwrap_or(0.0);
        if u("tiling_extra_macs") > 0 {
            outln!(
                "  column tiles:   {} extra MACs recomputed in the halos (--max-recompute {cap}%)",
                u("tiling_extra_macs")
            );
        } else {
            outln!("  column tiles:   none (--max-recompute {cap}%)");
        }
    }
    if let Some(cs) = v["channel_split"].as_object() {
        outln!(
            "  {} ({:.0} ms, {:.0} ms of it in the e-graph)",
            cs["summary"].as_str().unwrap_or(""),
            cs["millis"].as_f64().unwrap_or(0.0),
            cs["extract_millis"].as_f64().unwrap_or(0.0)
        );
        for c in cs["chains"].as_array().into_iter().flatten() {
            let names: Vec<&str> = c["names"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n.as_str())
                .collect();
            outln!(
                "    {} x{}: `{}` .. `{}`",
                c["kind"].as_str().unwrap_or(""),
                c["slices"].as_u64().unwrap_or(0),
                names.first().unwrap_or(&""),
                names.last().unwrap_or(&"")
            );
        }
    }
    outln!("  naive:          {}", fmt_bytes(u("naive_bytes")));
    outln!("  weights:        {}", fmt_bytes(u("weight_bytes")));
    if let Some(i) = v["scratch_step"].as_u64() {
        let st = &v["steps"][i as usize];
        outln!(
            "  kernel scratch: {} on the stack, besides the arena (largest: step {i}, {})",
            fmt_bytes(u("scratch_bytes")),
            st["kernel"].as_str().unwrap_or("")
        );
    }
    outln!(
        "  peak at step {}: {} `{}`",
        u("peak_step"),
        v["peak_step_op"].as_str().unwrap_or(""),
        v["peak_step_name"].as_str().unwrap_or("")
    );
    if a.steps {
        outln!("  step  op                live bytes  output");
        for (i, st) in v["steps"].as_array().into_iter().flatten().enumerate() {
            outln!(
                "  {i:>4}  {:<16} {:>11}  {}{}",
                st["op"].as_str().unwrap_or(""),
                st["live_bytes"].as_u64().unwrap_or(0),
                st["output"].as_str().unwrap_or(""),
                if st["in_place"].as_bool() == Some(true) {
                    " (in place)"
                } else {
                    ""
                }
            );
        }
    }
    Ok(())
}
