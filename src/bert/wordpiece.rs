//! BERT's WordPiece tokenizer, with the ids of transformers' `BertTokenizer` (transformers 5:
//! the `tokenizers` library's `BertNormalizer`, `BertPreTokenizer` and `WordPiece` model, and
//! the `[CLS] … [SEP]` template). In order:
//!
//! 1. special tokens typed in the text (`[CLS]`, `[SEP]`, `[UNK]`, `[PAD]`, `[MASK]`, exactly
//!    as written) are kept whole;
//! 2. the rest is cleaned (NUL, U+FFFD and other "C" characters dropped, whitespace made a
//!    space), CJK ideographs spaced apart, accents stripped (NFD, non-spacing marks dropped) and
//!    lower-cased, one character at a time, for an uncased vocabulary;
//! 3. split on whitespace, and around each punctuation character (ASCII's and Unicode's "P");
//! 4. each word greedily into the longest pieces of the vocabulary, `##` before a piece that
//!    continues a word; a word of more than 100 characters, or one with no split, is `[UNK]`.
//!
//! The character classes are the `unicode_categories` crate's, as in `tokenizers` itself.
//! `tests/native/bert.rs` checks the ids against transformers on 447 strings.

use std::collections::HashMap;

use unicode_categories::UnicodeCategories;
use unicode_normalization::UnicodeNormalization;

use crate::error::{Error, Result};

/// transformers' `max_input_chars_per_word`.
const MAX_WORD_CHARS: usize = 100;
const SPECIAL: [&str; 5] = ["[CLS]", "[SEP]", "[UNK]", "[PAD]", "[MASK]"];

/// A WordPiece vocabulary and the normaliser's one choice.
#[derive(Debug, Clone)]
pub struct WordPiece {
    ids: HashMap<String, u32>,
    /// An uncased vocabulary (`do_lower_case`, the default): lower-case and strip accents.
    pub lowercase: bool,
    cls: u32,
    sep: u32,
    unk: u32,
}

impl WordPiece {
    /// From `vocab.txt`: one token a line, its id the line's number.
    pub fn from_vocab_txt(text: &str, lowercase: bool) -> Result<Self> {
        Self::from_tokens(text.lines(), lowercase)
    }

    /// From the tokens in id order (as [`WordPiece::tokens`] gives them); a later duplicate
    /// takes the id, as in `vocab.txt`.
    pub fn from_tokens<S: AsRef<str>>(tokens: impl IntoIterator<Item = S>, lowercase: bool) -> Result<Self> {
        let ids = tokens.into_iter().enumerate().map(|(i, t)| (t.as_ref().to_string(), i as u32)).collect();
        Self::new(ids, lowercase)
    }

    /// The vocabulary of a BERT model folder: `vocab.txt` (with `tokenizer_config.json`'s
    /// `do_lower_case`, true when absent, as `BertTokenizer`'s default) or, without it,
    /// `tokenizer.json`. Each argument is a file's text, `None` where the folder lacks it.
    pub fn from_folder_files(
        vocab_txt: Option<&str>,
        tokenizer_json: Option<&str>,
        tokenizer_config: Option<&str>,
    ) -> Result<Self> {
        match (vocab_txt, tokenizer_json) {
            (Some(vocab), _) => {
                let lowercase = match tokenizer_config {
                    Some(text) => {
                        let json: serde_json::Value = serde_json::from_str(text)
                            .map_err(|e| Error::Config(format!("tokenizer_config.json is not valid JSON: {e}")))?;
                        json.get("do_lower_case").and_then(|v| v.as_bool()).unwrap_or(true)
                    }
                    None => true,
                };
                Self::from_vocab_txt(vocab, lowercase)
            }
            (None, Some(json)) => Self::from_tokenizer_json(json),
            (None, None) => Err(Error::Config(
                "the BERT text encoder has no vocabulary: its folder holds neither vocab.txt nor tokenizer.json".into(),
            )),
        }
    }

    /// The tokens in id order; an id that no token has (a gap in a `tokenizer.json`) is an
    /// empty string, which no piece of text can match.
    pub fn tokens(&self) -> Vec<String> {
        let mut out = vec![String::new(); self.vocab_size()];
        for (token, &id) in &self.ids {
            out[id as usize] = token.clone();
        }
        out
    }

    /// From a `tokenizer.json` of the `tokenizers` library: its WordPiece `model.vocab`, and
    /// `normalizer.lowercase`.
    pub fn from_tokenizer_json(text: &str) -> Result<Self> {
        let bad = |why: &str| Error::Config(format!("tokenizer.json: {why}"));
        let json: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(&e.to_string()))?;
        let model = &json["model"];
        if model["type"] != "WordPiece" {
            return Err(bad(&format!("the model is {}, not WordPiece (BERT's)", model["type"])));
        }
        let vocab = model["vocab"].as_object().ok_or_else(|| bad("model.vocab is not a map of tokens to ids"))?;
        let mut ids = HashMap::with_capacity(vocab.len());
        for (token, id) in vocab {
            let id =
                id.as_u64().and_then(|i| u32::try_from(i).ok()).ok_or_else(|| bad(&format!("{token}'s id is {id}")))?;
            ids.insert(token.clone(), id);
        }
        let lowercase = json["normalizer"]["lowercase"].as_bool().unwrap_or(true);
        Self::new(ids, lowercase)
    }

    fn new(ids: HashMap<String, u32>, lowercase: bool) -> Result<Self> {
        let id =
            |t: &str| ids.get(t).copied().ok_or_else(|| Error::Config(format!("the BERT vocabulary has no {t} token")));
        let (cls, sep, unk) = (id("[CLS]")?, id("[SEP]")?, id("[UNK]")?);
        Ok(WordPiece { ids, lowercase, cls, sep, unk })
    }

    /// The vocabulary's size: one more than its largest id.
    pub fn vocab_size(&self) -> usize {
        self.ids.values().max().map_or(0, |&m| m as usize + 1)
    }

    /// [`WordPiece::encode`] cut to at most `max` ids, `[SEP]` kept last, as `BertTokenizer`
    /// truncates with `truncation=True, max_length=max`.
    pub fn encode_within(&self, text: &str, max: usize) -> Vec<u32> {
        let mut ids = self.encode(text);
        if ids.len() > max && max >= 2 {
            ids.truncate(max - 1);
            ids.push(self.sep);
        }
        ids
    }

    /// `[CLS]`, the text's pieces, `[SEP]`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = vec![self.cls];
        let mut rest = text;
        while !rest.is_empty() {
            // The leftmost special token, the longest where two start together.
            let next = SPECIAL
                .iter()
                .filter_map(|s| rest.find(s).map(|at| (at, s.len(), *s)))
                .min_by_key(|&(at, len, _)| (at, usize::MAX - len));
            let (plain, special) = match next {
                Some((at, len, s)) => (&rest[..at], Some((s, &rest[at + len..]))),
                None => (rest, None),
            };
            self.encode_plain(plain, &mut out);
            match special {
                Some((s, after)) => {
                    out.extend(self.ids.get(s));
                    rest = after;
                }
                None => break,
            }
        }
        out.push(self.sep);
        out
    }

    fn encode_plain(&self, text: &str, out: &mut Vec<u32>) {
        let normal = self.normalize(text);
        for word in normal.split(char::is_whitespace).filter(|w| !w.is_empty()) {
            let mut start = 0;
            for (i, c) in word.char_indices() {
                if is_punctuation(c) {
                    self.word(&word[start..i], out);
                    self.word(&word[i..i + c.len_utf8()], out);
                    start = i + c.len_utf8();
                }
            }
            self.word(&word[start..], out);
        }
    }

    /// `BertNormalizer`: clean, space CJK apart, strip accents and lower-case (uncased).
    fn normalize(&self, text: &str) -> String {
        let mut cleaned = String::with_capacity(text.len());
        for c in text.chars() {
            if c == '\0' || c == '\u{fffd}' || is_control(c) {
                continue;
            }
            if is_whitespace(c) {
                cleaned.push(' ');
            } else if is_cjk(c) {
                cleaned.extend([' ', c, ' ']);
            } else {
                cleaned.push(c);
            }
        }
        if !self.lowercase {
            return cleaned;
        }
        cleaned.nfd().filter(|c| !c.is_mark_nonspacing()).flat_map(char::to_lowercase).collect()
    }

    /// One word's pieces, longest first, or `[UNK]` for the whole word.
    fn word(&self, word: &str, out: &mut Vec<u32>) {
        if word.is_empty() {
            return;
        }
        if word.chars().count() > MAX_WORD_CHARS {
            out.push(self.unk);
            return;
        }
        let mark = out.len();
        let mut start = 0;
        while start < word.len() {
            let mut end = word.len();
            let found = loop {
                let piece = &word[start..end];
                let id = if start == 0 { self.ids.get(piece) } else { self.ids.get(&format!("##{piece}")) };
                if let Some(&id) = id {
                    break Some(id);
                }
                end -= piece.chars().next_back().map_or(1, char::len_utf8);
                if end <= start {
                    break None;
                }
            };
            match found {
                Some(id) => out.push(id),
                None => {
                    out.truncate(mark);
                    out.push(self.unk);
                    return;
                }
            }
            start = end;
        }
    }
}

/// Tab, newline and carriage return count as whitespace, not control characters.
fn is_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || c.is_whitespace()
}

fn is_control(c: char) -> bool {
    !matches!(c, '\t' | '\n' | '\r') && c.is_other()
}

fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation() || c.is_punctuation()
}

/// The CJK Unified Ideographs blocks BERT spaces apart (not Hiragana, Katakana or Hangul).
fn is_cjk(c: char) -> bool {
    matches!(
        c as u32,
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x20000..=0x2A6DF
            | 0x2A700..=0x2B73F
            | 0x2B740..=0x2B81F
            | 0x2B920..=0x2CEAF
            | 0xF900..=0xFAFF
            | 0x2F800..=0x2FA1F
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab() -> WordPiece {
        let tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "cat", ",", "東"];
        WordPiece::from_vocab_txt(&tokens.join("\n"), true).unwrap()
    }

    #[test]
    fn words_split_into_the_longest_pieces() {
        // [CLS] un ##aff ##able , cat 東 [UNK] [SEP]
        assert_eq!(vocab().encode("Unaffable,  CAT東dog"), [2, 5, 6, 7, 9, 8, 10, 1, 3]);
    }

    #[test]
    fn tokens_round_trip_and_long_texts_keep_sep_last() {
        let v = vocab();
        let again = WordPiece::from_tokens(v.tokens(), true).unwrap();
        assert_eq!(again.encode("Unaffable, cat"), v.encode("Unaffable, cat"));
        assert_eq!(v.encode_within("cat cat cat cat", 4), [2, 8, 8, 3]);
        assert_eq!(v.encode_within("cat", 4), [2, 8, 3]);
    }

    #[test]
    fn a_folder_without_a_vocabulary_is_refused() {
        let e = WordPiece::from_folder_files(None, None, None).unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{e:?}");
        assert!(e.to_string().contains("neither vocab.txt nor tokenizer.json"), "{e}");
        let cased = "[PAD]\n[UNK]\n[CLS]\n[SEP]\nCat";
        let v = WordPiece::from_folder_files(Some(cased), None, Some(r#"{"do_lower_case": false}"#)).unwrap();
        assert!(!v.lowercase);
    }

    #[test]
    fn a_vocabulary_without_its_special_tokens_is_refused() {
        let e = WordPiece::from_vocab_txt("a\nb", true).unwrap_err().to_string();
        assert!(e.contains("no [CLS] token"), "{e}");
    }
}
