//! Prints the top logits of the last token for ids given on the command
//! line (a debugging aid: compare with llama.cpp on the same file).
//!
//! `cargo run --release -p exodus-model --example logits -- MODEL.gguf eager|graph ID ID ...`

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let file = exodus_gguf::GgufFile::open(&args[1])?;
    let opts = exodus_model::LoadOptions {
        mode: args[2].parse()?,
        max_tokens: 512,
        ..Default::default()
    };
    let model = exodus_model::Model::load(&file, &opts)?;
    let ids: Vec<u32> = args[3..]
        .iter()
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let logits = model.forward(&ids, 0, false)?;
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    for &i in &order[..5] {
        println!("{i} {}", logits[i]);
    }
    Ok(())
}
