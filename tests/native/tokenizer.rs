//! The tokenizer gives exactly transformers `CLIPTokenizer`'s ids on the committed cases
//! (tests/fixtures/tokenizer/cases.jsonl, written by tools/make_fixtures.py).

use crate::common;

use wordmask::tokenizer::Tokenizer;

#[test]
fn ids_match_transformers_on_every_case() {
    let text = std::fs::read_to_string(common::fixtures().join("tokenizer/cases.jsonl")).unwrap();
    let tokenizer = Tokenizer::new();
    let mut failures = Vec::new();
    let mut count = 0;
    for line in text.lines() {
        let case: serde_json::Value = serde_json::from_str(line).unwrap();
        let input = case["text"].as_str().unwrap();
        let want: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let got = tokenizer.encode(input, 77);
        if got != want {
            failures.push(format!("{input:?}\n  ours:      {got:?}\n  reference: {want:?}"));
        }
        count += 1;
    }
    assert!(count >= 1000, "only {count} cases");
    assert!(failures.is_empty(), "{} of {count} strings differ:\n{}", failures.len(), failures.join("\n"));
}
