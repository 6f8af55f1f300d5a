//! The label syntax shared by the CLI, the page and the component: classes separated by commas
//! or newlines (`cat, dog, car`); synonyms of one class joined by `|` (`person|people`).

use crate::error::{Error, Result};

/// At most this many classes (LVIS has 1,203). Label maps are 8-bit up to 255 labels (0 is
/// "unlabelled") and 16-bit beyond.
pub const MAX_LABELS: usize = 2048;
/// At most this many lines in a class file: evaluation compares 8-bit label PNGs.
pub const MAX_CLASS_FILE_LINES: usize = 255;
/// Longest label text accepted, in characters.
pub const MAX_LABEL_CHARS: usize = 200;

/// One class: its display name (the first synonym) and every synonym.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Label {
    pub name: String,
    pub synonyms: Vec<String>,
}

/// Parse a label list. Errors name the problem: nothing given, too many, too long, a word in
/// two classes (the two would split its pixels between them, and neither might pass the
/// threshold). A synonym repeated within its own class is kept once.
pub fn parse(text: &str) -> Result<Vec<Label>> {
    let mut labels: Vec<Label> = Vec::new();
    for class in text.split([',', '\n', ';']) {
        let mut synonyms: Vec<String> = Vec::new();
        for word in class.split('|').map(|s| s.split_whitespace().collect::<Vec<_>>().join(" ")) {
            if !word.is_empty() && !synonyms.contains(&word) {
                synonyms.push(word);
            }
        }
        if synonyms.is_empty() {
            continue;
        }
        if let Some(long) = synonyms.iter().find(|s| s.chars().count() > MAX_LABEL_CHARS) {
            return Err(Error::invalid(format!(
                "label \"{}...\" is longer than {MAX_LABEL_CHARS} characters",
                long.chars().take(30).collect::<String>()
            )));
        }
        if let Some((k, word)) = labels
            .iter()
            .enumerate()
            .find_map(|(k, l)| synonyms.iter().find(|w| l.synonyms.contains(w)).map(|w| (k, w)))
        {
            return Err(Error::invalid(format!(
                "\"{word}\" is typed twice (labels {} and {}): a word may name one class; for synonyms write a|b",
                k + 1,
                labels.len() + 1
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

/// Parse a class-name file in the SCLIP/NACLIP format: one class per line (index = line
/// number from 0), synonyms separated by commas. Blank lines are an error: they would shift
/// every later class index.
pub fn parse_class_file(text: &str) -> Result<Vec<Label>> {
    let lines: Vec<&str> = text.trim_end_matches(['\n', '\r']).lines().collect();
    if lines.is_empty() || lines.len() > MAX_CLASS_FILE_LINES {
        return Err(Error::invalid(format!(
            "a class file needs 1 to {MAX_CLASS_FILE_LINES} lines (label PNGs are 8-bit), this one has {}",
            lines.len()
        )));
    }
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let synonyms: Vec<String> =
                line.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
            if synonyms.is_empty() {
                return Err(Error::invalid(format!("class file line {} is empty", i + 1)));
            }
            Ok(Label { name: synonyms[0].clone(), synonyms })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_word_names_one_class() {
        let err = parse("cat, dog, cat").unwrap_err().to_string();
        assert!(err.contains("\"cat\" is typed twice (labels 1 and 3)"), "{err}");
        let err = parse("person|people, crowd|people").unwrap_err().to_string();
        assert!(err.contains("\"people\" is typed twice (labels 1 and 2)"), "{err}");
        assert_eq!(parse("cat|cat|kitty").unwrap()[0].synonyms, ["cat", "kitty"]);
    }

    #[test]
    fn commas_newlines_and_synonyms() {
        let labels = parse(" person | people ,dog\n\n  red   car ,").unwrap();
        let names: Vec<&str> = labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["person", "dog", "red car"]);
        assert_eq!(labels[0].synonyms, ["person", "people"]);
    }

    #[test]
    fn class_files_keep_one_class_per_line() {
        let labels = parse_class_file("sky, wall, tree\naeroplane\nperson, person in shirt\n").unwrap();
        assert_eq!(labels.len(), 3);
        assert_eq!(labels[0].synonyms, ["sky", "wall", "tree"]);
        assert_eq!(labels[2].name, "person");
        assert!(parse_class_file("a\n\nb").unwrap_err().to_string().contains("line 2"));
    }

    #[test]
    fn empty_and_huge_lists_are_refused() {
        assert!(parse(" , \n |").unwrap_err().to_string().contains("no labels"));
        let list = |n: usize| (0..n).map(|i| format!("thing{i}")).collect::<Vec<_>>().join(",");
        assert_eq!(parse(&list(MAX_LABELS)).unwrap().len(), MAX_LABELS);
        assert!(parse(&list(MAX_LABELS + 1)).unwrap_err().to_string().contains(&format!("{} labels", MAX_LABELS + 1)));
        let lines = (0..MAX_CLASS_FILE_LINES + 1).map(|i| format!("c{i}")).collect::<Vec<_>>().join("\n");
        assert!(parse_class_file(&lines).unwrap_err().to_string().contains("8-bit"));
        assert!(parse(&"x".repeat(500)).unwrap_err().to_string().contains("longer than"));
    }
}
