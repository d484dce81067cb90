//! [`Graph::dump`]: a readable text form, one line per value and node.
//!
//! ```text
//! graph mlp(tokens) {
//!   %0 x: f32[tokens, 576] = input
//!   %1 w_up: f32[1536, 576] = weight
//!   %3 up: f32[tokens, 1536] = matmul(%0, %1)
//!   return %3
//! }
//! ```

use std::fmt::Write;

use crate::ir::{Def, Epilogue, Graph, Op, Step, Unary, ValueId};

impl Graph {
    /// The graph as text: inputs, weights and constants first, then one
    /// line per node in execution order (`%id name: type[shape] = op(args)
    /// attributes`), then the outputs.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "graph {}({}) {{", self.name, self.symbols.join(", "));
        let decl = |out: &mut String, v: ValueId, rhs: &str| {
            if let Some(info) = self.value(v) {
                let _ = writeln!(
                    out,
                    "  %{} {}: {}{} = {rhs}",
                    v.0,
                    info.name,
                    info.dtype,
                    info.shape.display(&self.symbols)
                );
            }
        };
        for (i, info) in self.values.iter().enumerate() {
            let rhs = match &info.def {
                Def::Input => "input".to_owned(),
                Def::Weight => "weight".to_owned(),
                Def::State => "state".to_owned(),
                Def::Const(data) => format!("const({} values)", data.len()),
                Def::Node { .. } | Def::Removed => continue,
            };
            decl(&mut out, ValueId(i as u32), &rhs);
        }
        for node in &self.nodes {
            let args: Vec<String> = node.inputs.iter().map(|v| format!("%{}", v.0)).collect();
            let attrs = attributes(&node.op, &self.symbols);
            let rhs = format!("{}({}){attrs}", node.op.name(), args.join(", "));
            for &v in &node.outputs {
                decl(&mut out, v, &rhs);
            }
        }
        let outs: Vec<String> = self.outputs.iter().map(|v| format!("%{}", v.0)).collect();
        let _ = writeln!(out, "  return {}", outs.join(", "));
        out.push_str("}\n");
        out
    }
}

/// An op's attributes as ` key=value ...` (empty when it has none).
fn attributes(op: &Op, symbols: &[String]) -> String {
    match op {
        Op::Unary(Unary::Gelu { tanh }) => format!(" tanh={tanh}"),
        Op::Unary(Unary::Scale(f)) => format!(" factor={f}"),
        Op::RmsNorm { eps } | Op::LayerNorm { eps } => format!(" eps={eps}"),
        Op::Rope {
            head_dim,
            neox,
            theta,
        } => format!(" head_dim={head_dim} neox={neox} theta={theta}"),
        Op::Reshape(shape) => format!(" shape={}", shape.display(symbols)),
        Op::Transpose(perm) => format!(" perm={perm:?}"),
        Op::Slice { axis, start, end } => format!(" axis={axis} range={start}..{end}"),
        Op::AllGather { offset, total } => format!(" from={offset} of={total}"),
        Op::Concat { axis } => format!(" axis={axis}"),
        Op::TopK { k } => format!(" k={k}"),
        Op::Split { axis, sizes } => format!(" axis={axis} sizes={sizes:?}"),
        Op::Linear(l) => {
            let norm = l
                .rms_norm
                .map(|e| format!(" rms_norm={e}"))
                .unwrap_or_default();
            let epilogue = match l.epilogue {
                Epilogue::None => "",
                Epilogue::Residual => " epilogue=residual",
                Epilogue::SwiGlu => " epilogue=swiglu",
            };
            let bias = if l.bias { " bias" } else { "" };
            format!("{norm} weights={}{bias}{epilogue}", l.weights)
        }
        Op::Attention {
            heads,
            scale,
            centered,
        }
        | Op::AttentionBatch {
            heads,
            scale,
            centered,
        } => {
            let scale = scale.map(|s| format!(" scale={s}")).unwrap_or_default();
            let centered = match centered {
                Some(c) if c.neox => " centered=neox",
                Some(_) => " centered=interleaved",
                None => "",
            };
            format!(" heads={heads}{scale}{centered}")
        }
        Op::Fused(program) => {
            let steps: Vec<String> = program
                .steps
                .iter()
                .map(|s| match s {
                    Step::Unary(u, a) => format!("{}(r{a})", Op::Unary(*u).name()),
                    Step::Binary(b, a, c) => format!("{b:?}(r{a}, r{c})").to_lowercase(),
                    Step::Norm {
                        layer,
                        x,
                        weight,
                        bias,
                        eps,
                    } => {
                        let name = if *layer { "layer_norm" } else { "rms_norm" };
                        let bias = bias.map(|b| format!(", r{b}")).unwrap_or_default();
                        format!("{name}(r{x}, r{weight}{bias}) eps={eps}")
                    }
                })
                .collect();
            format!(" [{}]", steps.join("; "))
        }
        _ => String::new(),
    }
}

impl Graph {
    /// The graph in Graphviz DOT: a box per node (op and name), an ellipse
    /// per input, weight or constant, edges labelled with the shape that
    /// flows along them. `dot -Tsvg` draws it.
    pub fn to_dot(&self) -> String {
        let mut out = String::new();
        let quote = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let _ = writeln!(out, "digraph \"{}\" {{", quote(&self.name));
        let _ = writeln!(out, "  rankdir=TB; node [fontname=\"monospace\"];");
        // Where each value comes from: a source node id in the DOT graph.
        let source = |v: ValueId| -> String {
            match self.value(v).map(|i| &i.def) {
                Some(Def::Node { node, .. }) => format!("n{}", node.0),
                _ => format!("v{}", v.0),
            }
        };
        for (i, info) in self.values.iter().enumerate() {
            let kind = match info.def {
                Def::Input => "input",
                Def::Weight => "weight",
                Def::State => "state",
                Def::Const(_) => "const",
                Def::Node { .. } | Def::Removed => continue,
            };
            let _ = writeln!(
                out,
                "  v{i} [shape=ellipse, label=\"{}\\n{kind} {}{}\"];",
                quote(&info.name),
                info.dtype,
                info.shape.display(&self.symbols)
            );
        }
        for (n, node) in self.nodes.iter().enumerate() {
            let _ = writeln!(
                out,
                "  n{n} [shape=box, label=\"{}\\n{}{}\"];",
                node.op.name(),
                quote(&node.name),
                quote(&attributes(&node.op, &self.symbols))
            );
            for &v in &node.inputs {
                let label = self
                    .value(v)
                    .map(|i| format!("{}{}", i.dtype, i.shape.display(&self.symbols)))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "  {} -> n{n} [label=\"{}\"];",
                    source(v),
                    quote(&label)
                );
            }
        }
        for (i, &v) in self.outputs.iter().enumerate() {
            let _ = writeln!(out, "  out{i} [shape=doublecircle, label=\"out {i}\"];");
            let _ = writeln!(out, "  {} -> out{i};", source(v));
        }
        out.push_str("}\n");
        out
    }
}
