//! CLIP's byte-pair tokenizer, with the ids of transformers `CLIPTokenizer`: lower-casing,
//! whitespace cleanup, `<|startoftext|>` ... `<|endoftext|>`, truncated to the context length
//! keeping the end token. The BPE itself is `instant-clip-tokenizer`, over the 48,894 merges
//! of OpenAI's vocabulary in `tools/clip_tokenizer/merges.txt` (the merges CLIP uses; the
//! crate's own bundled file is the whole 262 k-line list, 2.7 MB more in the page's module);
//! `tests/native/tokenizer.rs` checks its ids against transformers on 1,000+ strings.

use instant_clip_tokenizer::Token;

/// CLIP's merges, a header line first (the same file transformers' tokenizer reads).
const MERGES: &str = include_str!("../tools/clip_tokenizer/merges.txt");
/// Byte tokens (2 x 256), the merges and the two special tokens.
const VOCABULARY_SIZE: u16 = 49_408;

const SOT_TEXT: &str = "<|startoftext|>";
const EOT_TEXT: &str = "<|endoftext|>";

/// transformers' normalizer (NFC, lower-case) before byte-pair encoding. A special token
/// that only appears after lower-casing (`<|ENDOFTEXT|>`) is not special there: its pre-tokenizer
/// keeps it as one word, which the byte-level split then cuts into `<|`, the name and `|>`;
/// spacing those pieces apart gives the inner tokenizer the same words.
fn normalize(text: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let lower = text.nfc().collect::<String>().to_lowercase();
    if !lower.contains("<|") {
        return lower;
    }
    lower.replace(SOT_TEXT, " <| startoftext |> ").replace(EOT_TEXT, " <| endoftext |> ")
}

pub struct Tokenizer {
    inner: instant_clip_tokenizer::Tokenizer,
}

impl Default for Tokenizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Tokenizer {
    /// Build the tokenizer (parses the bundled vocabulary: do it once).
    pub fn new() -> Self {
        let inner = instant_clip_tokenizer::Tokenizer::with_vocabulary(std::io::Cursor::new(MERGES), VOCABULARY_SIZE)
            .expect("the bundled merges are valid");
        Tokenizer { inner }
    }

    pub fn start_of_text(&self) -> u32 {
        self.inner.start_of_text().to_u16() as u32
    }

    pub fn end_of_text(&self) -> u32 {
        self.inner.end_of_text().to_u16() as u32
    }

    /// Ids of one text with start and end tokens, at most `context` long (the end token is
    /// kept when truncating).
    pub fn encode(&self, text: &str, context: usize) -> Vec<u32> {
        let body = self.encode_body(text);
        let room = context.saturating_sub(2);
        let mut ids = Vec::with_capacity(body.len().min(room) + 2);
        ids.push(self.start_of_text());
        ids.extend(body.iter().take(room));
        ids.push(self.end_of_text());
        ids
    }

    /// Ids without start and end tokens. The special tokens written out in the text
    /// (`<|startoftext|>`, `<|endoftext|>`) become their ids, as transformers matches them
    /// before byte-pair encoding.
    fn encode_body(&self, text: &str) -> Vec<u32> {
        let specials = [(SOT_TEXT, self.start_of_text()), (EOT_TEXT, self.end_of_text())];
        let mut ids = Vec::new();
        let mut rest = text;
        loop {
            let next = specials.iter().filter_map(|&(s, id)| rest.find(s).map(|at| (at, s.len(), id))).min();
            let (segment, special) = match next {
                Some((at, len, id)) => (&rest[..at], Some((len, id, at))),
                None => (rest, None),
            };
            let mut tokens: Vec<Token> = Vec::new();
            self.inner.encode(&normalize(segment), &mut tokens);
            ids.extend(tokens.iter().map(|t| t.to_u16() as u32));
            match special {
                Some((len, id, at)) => {
                    ids.push(id);
                    rest = &rest[at + len..];
                }
                None => return ids,
            }
        }
    }

    /// Encode several texts and pad them to the longest with the end token (what the
    /// transformers processor does with `padding=True`; the causal mask makes padding inert).
    pub fn encode_batch(&self, texts: &[&str], context: usize) -> Vec<Vec<u32>> {
        let mut rows: Vec<Vec<u32>> = texts.iter().map(|t| self.encode(t, context)).collect();
        let longest = rows.iter().map(Vec::len).max().unwrap_or(0);
        let pad = self.end_of_text();
        rows.iter_mut().for_each(|r| r.resize(longest, pad));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_keep_the_end_token() {
        let t = Tokenizer::new();
        let ids = t.encode(&"cat ".repeat(200), 77);
        assert_eq!(ids.len(), 77);
        assert_eq!(ids[0], t.start_of_text());
        assert_eq!(ids[76], t.end_of_text());
        assert_eq!(t.encode("", 77), vec![t.start_of_text(), t.end_of_text()]);
    }

    #[test]
    fn batches_are_padded_to_the_longest() {
        let t = Tokenizer::new();
        let rows = t.encode_batch(&["a photo of a cat.", "dog"], 77);
        assert_eq!(rows[0], vec![49406, 320, 1125, 539, 320, 2368, 269, 49407]);
        assert_eq!(rows[1].len(), rows[0].len());
        assert_eq!(*rows[1].last().unwrap(), t.end_of_text());
    }
}
