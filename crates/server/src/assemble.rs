//! From generated token ids to the text a client sees: UTF-8 assembled
//! across tokens (a character split over two tokens is held back until it
//! is whole), and stop strings: the text is cut before the first one, and
//! text that might be the start of one is held back until it is clear
//! that it is not, so a streaming client never sees a stop string or part
//! of one.

use exodus_engine::text::{StreamDecoder, Tokenizer};

/// What one token did to the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// New text to send (possibly empty: held back).
    Text(String),
    /// A stop string appeared: the text before it, and the end.
    Stopped(String),
}

/// The text of one generation.
#[derive(Debug)]
pub struct TextAssembler {
    decoder: StreamDecoder,
    text: StopScanner,
}

impl TextAssembler {
    /// An assembler that cuts at `stops` (empty strings are ignored).
    pub fn new(tokenizer: &Tokenizer, stops: Vec<String>) -> TextAssembler {
        TextAssembler {
            decoder: tokenizer.stream_decoder(true),
            text: StopScanner::new(stops),
        }
    }

    /// Adds token `id`.
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Piece {
        let piece = self.decoder.push(tokenizer, id).unwrap_or_default();
        self.text.add(&piece)
    }

    /// The text not sent yet (held back for a stop string that did not
    /// come, or an incomplete character at the end), at the end of the
    /// generation.
    pub fn finish(&mut self) -> String {
        let rest = self.decoder.finish();
        self.text.finish(&rest)
    }

    /// All the text so far (cut at a stop string once one came).
    pub fn text(&self) -> &str {
        &self.text.text
    }
}

/// The stop-string logic over text as it grows.
#[derive(Debug, Default)]
struct StopScanner {
    stops: Vec<String>,
    text: String,
    /// Bytes of `text` sent.
    sent: usize,
}

impl StopScanner {
    fn new(stops: Vec<String>) -> StopScanner {
        StopScanner {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            ..StopScanner::default()
        }
    }

    fn add(&mut self, piece: &str) -> Piece {
        // A stop string can only end in the new piece, so the search starts
        // far enough back to see one that began in earlier text.
        let longest = self.stops.iter().map(String::len).max().unwrap_or(0);
        let mut from = self.text.len().saturating_sub(longest.saturating_sub(1));
        while !self.text.is_char_boundary(from) {
            from -= 1;
        }
        self.text.push_str(piece);
        let first_stop = self
            .stops
            .iter()
            .filter_map(|s| self.text[from..].find(s.as_str()).map(|at| from + at))
            .min();
        if let Some(at) = first_stop {
            let at = at.max(self.sent);
            let delta = self.text[self.sent..at].to_string();
            self.sent = at;
            self.text.truncate(at);
            return Piece::Stopped(delta);
        }
        let safe = self.text.len() - self.held_back();
        let delta = self.text[self.sent..safe].to_string();
        self.sent = safe;
        Piece::Text(delta)
    }

    /// Bytes at the end of the text that could begin a stop string.
    fn held_back(&self) -> usize {
        let mut keep = 0;
        for s in &self.stops {
            for len in (keep + 1..s.len()).rev() {
                if s.is_char_boundary(len) && self.text.ends_with(&s[..len]) {
                    keep = len;
                    break;
                }
            }
        }
        keep.min(self.text.len() - self.sent)
    }

    fn finish(&mut self, rest: &str) -> String {
        self.text.push_str(rest);
        let delta = self.text[self.sent..].to_string();
        self.sent = self.text.len();
        delta
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `pieces` through the stop logic, as if each were one token's
    /// text; returns what a streaming client saw and whether it stopped.
    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, bool) {
        let mut a = StopScanner::new(stops.iter().map(|s| s.to_string()).collect());
        let mut seen = Vec::new();
        for p in pieces {
            match a.add(p) {
                Piece::Text(t) => seen.push(t),
                Piece::Stopped(t) => {
                    seen.push(t);
                    assert_eq!(a.text, seen.concat());
                    return (seen, true);
                }
            }
        }
        seen.push(a.text[a.sent..].to_string());
        (seen, false)
    }

    #[test]
    fn text_is_cut_before_a_stop_string_split_over_tokens() {
        let (seen, stopped) = run(&["\nUser:"], &["Hello", " there", "\nUs", "er:", " more"]);
        assert!(stopped);
        assert_eq!(seen.concat(), "Hello there");
        // "\nUs" was held back, never sent.
        assert_eq!(seen, vec!["Hello", " there", "", ""]);
    }

    #[test]
    fn held_back_text_is_released_when_it_is_not_a_stop() {
        let (seen, stopped) = run(&["STOP"], &["a S", "T", "ay", "!"]);
        assert!(!stopped);
        assert_eq!(seen.concat(), "a STay!");
        assert_eq!(seen[0], "a ");
    }

    #[test]
    fn the_earliest_of_several_stops_wins_even_inside_one_piece() {
        let (seen, stopped) = run(&["bc", "x"], &["ab", "cx"]);
        assert!(stopped);
        assert_eq!(seen.concat(), "a");
        let (seen, _) = run(&["é!"], &["café", "!"]);
        assert_eq!(seen.concat(), "caf");
    }
}
