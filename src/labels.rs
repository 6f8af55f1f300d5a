//! The label syntax shared by the CLI, the page and the component: classes separated by commas
//! or newlines (`cat, dog, car`); synonyms of one class joined by `|` (`person|people`).

use crate::error::{Error, Result};

/// At most this many classes: label maps are 8-bit with 0 kept for "unlabelled".
pub const MAX_LABELS: usize = 255;
/// Longest label text accepted, in characters.
pub const MAX_LABEL_CHARS: usize = 200;

/// One class: its display name (the first synonym) and every synonym.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Label {
    pub name: String,
    pub synonyms: Vec<String>,
}

/// Parse a label list. Errors name the problem: nothing given, too many, too long.
pub fn parse(text: &str) -> Result<Vec<Label>> {
    let mut labels = Vec::new();
    for class in text.split([',', '\n', ';']) {
        let synonyms: Vec<String> =
            class.split('|').map(|s| s.split_whitespace().collect::<Vec<_>>().join(" ")).filter(|s| !s.is_empty()).collect();
        if synonyms.is_empty() {
            continue;
        }
        if let Some(long) = synonyms.iter().find(|s| s.chars().count() > MAX_LABEL_CHARS) {
            return Err(Error::invalid(format!(
                "label \"{}...\" is longer than {MAX_LABEL_CHARS} characters",
                long.chars().take(30).collect::<String>()
            )));
        }
        labels.push(Label { name: synonyms[0].clone(), synonyms });
    }
    if labels.is_empty() {
        return Err(Error::invalid("no labels given: type words separated by commas, e.g. \"cat, dog, grass\""));
    }
    if labels.len() > MAX_LABELS {
        return Err(Error::invalid(format!("{} labels given; at most {MAX_LABELS} are supported", labels.len())));
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commas_newlines_and_synonyms() {
        let labels = parse(" person | people ,dog\n\n  red   car ,").unwrap();
        let names: Vec<&str> = labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["person", "dog", "red car"]);
        assert_eq!(labels[0].synonyms, ["person", "people"]);
    }

    #[test]
    fn empty_and_huge_lists_are_refused() {
        assert!(parse(" , \n |").unwrap_err().to_string().contains("no labels"));
        let many = (0..300).map(|i| format!("thing{i}")).collect::<Vec<_>>().join(",");
        assert!(parse(&many).unwrap_err().to_string().contains("300 labels"));
        assert!(parse(&"x".repeat(500)).unwrap_err().to_string().contains("longer than"));
    }
}
