//! Perplexity of a token-id file (a JSON array) with llama.cpp's method: a
//! debugging aid to compare with llama.cpp on the very same tokens.
//!
//! `cargo run --release -p exodus-model --example perplexity_ids -- MODEL.gguf eager|graph IDS.json [CTX]`

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let file = exodus_gguf::GgufFile::open(&args[1])?;
    let ctx: usize = args.get(4).map_or(Ok(512), |c| c.parse())?;
    let opts = exodus_model::LoadOptions {
        mode: args[2].parse()?,
        max_tokens: ctx,
        ..Default::default()
    };
    let model = exodus_model::Model::load(&file, &opts)?;
    let text = std::fs::read_to_string(&args[3])?;
    let ids: Vec<u32> = text
        .trim()
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    let start = std::time::Instant::now();
    let p = exodus_model::perplexity(&model, &ids, ctx, None, |c, n, ppl| {
        eprintln!("[{c}/{n}] {ppl:.4}");
    })?;
    println!(
        "ppl {:.4} over {} tokens in {} windows, {:.1} s",
        p.ppl,
        p.scored,
        p.chunks,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
