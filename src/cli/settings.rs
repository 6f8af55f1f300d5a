//! `wordmask settings`: the core's one settings list (`segment::Settings`, whose fields are
//! the CLI's flags) and its engines, as JSON or as the module the page and `<word-mask>` read
//! (`www/settings.js`: the Advanced controls and the component's attributes are made from
//! it). A test checks that the committed module is what this prints, so a setting added to
//! the core cannot be missing from either.

use std::any::TypeId;

use clap::Args;
use serde::Serialize;
use serde_json::json;

use wordmask::segment::point::PROMPT_ENGINES;
use wordmask::segment::{ENGINES, Settings, Words};

#[derive(Args)]
pub struct SettingsArgs {
    /// Print the ES module `www/settings.js` instead of JSON.
    #[arg(long)]
    js: bool,
}

/// One setting as the bindings see it.
#[derive(Serialize)]
struct Setting {
    /// Its name in the page's options and the core's settings (camelCase).
    key: String,
    /// Its `<word-mask>` attribute.
    attribute: String,
    /// Its flag on the command line.
    flag: String,
    /// `choice`, `integer`, `number` (in [0, 1] for the threshold) or `words`.
    kind: &'static str,
    /// `[value, help]` for a choice.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    choices: Vec<(String, String)>,
    help: String,
    /// The engines whose options hold it (every engine for `engine`).
    engines: Vec<&'static str>,
}

fn camel(kebab: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in kebab.chars() {
        match c {
            '-' => upper = true,
            c if upper => {
                out.extend(c.to_uppercase());
                upper = false;
            }
            c => out.push(c),
        }
    }
    out
}

fn kind(arg: &clap::Arg) -> &'static str {
    let id = arg.get_value_parser().type_id();
    if !arg.get_possible_values().is_empty() {
        "choice"
    } else if id == TypeId::of::<usize>() {
        "integer"
    } else if id == TypeId::of::<f32>() {
        "number"
    } else if id == TypeId::of::<Words>() {
        "words"
    } else {
        "text"
    }
}

fn settings() -> Vec<Setting> {
    let command = Settings::augment_args(clap::Command::new("settings"));
    let defaults: Vec<(&str, serde_json::Value)> = ENGINES.iter().map(|e| (e.name(), e.defaults())).collect();
    command
        .get_arguments()
        .filter_map(|arg| {
            let long = arg.get_long()?;
            let key = camel(long);
            let engines = defaults
                .iter()
                .filter(|(_, d)| key == "engine" || d.get(&key).is_some())
                .map(|(name, _)| *name)
                .collect();
            let choices = arg
                .get_possible_values()
                .iter()
                .map(|v| (v.get_name().to_string(), v.get_help().map(ToString::to_string).unwrap_or_default()))
                .collect();
            let help = arg.get_long_help().or(arg.get_help()).map(ToString::to_string).unwrap_or_default();
            Some(Setting {
                key,
                attribute: long.into(),
                flag: format!("--{long}"),
                kind: kind(arg),
                choices,
                help,
                engines,
            })
        })
        .collect()
}

fn engines() -> serde_json::Value {
    let words: Vec<_> = ENGINES
        .iter()
        .map(|e| {
            json!({"name": e.name(), "architecture": e.architecture(), "modelType": e.model_type(),
                   "description": e.description(), "threshold": e.threshold_means(), "defaults": e.defaults()})
        })
        .collect();
    let prompts: Vec<_> = PROMPT_ENGINES
        .iter()
        .map(|e| json!({"name": e.name(), "architecture": e.architecture(), "modelType": e.model_type(), "names": e.names_masks()}))
        .collect();
    json!({"words": words, "prompts": prompts})
}

/// `items` as a JS array literal, one item a line.
fn lines<T: Serialize>(items: &[T]) -> String {
    let items: Vec<String> =
        items.iter().map(|i| format!("  {}", serde_json::to_string(i).unwrap_or_default())).collect();
    format!("[\n{},\n]", items.join(",\n"))
}

/// The ES module the page and `<word-mask>` import.
pub fn module() -> String {
    let engines = engines();
    let list = |v: &serde_json::Value| lines(v.as_array().map(Vec::as_slice).unwrap_or_default());
    format!(
        "// Generated from the core's settings and engine registries by `wordmask settings --js`\n\
         // (`cargo run --release -- settings --js > www/settings.js`); do not edit: a test checks\n\
         // that this file is what the core prints.\n\
         export const SETTINGS = {};\n\
         export const ENGINES = {};\n\
         export const PROMPT_ENGINES = {};\n",
        lines(&settings()),
        list(&engines["words"]),
        list(&engines["prompts"]),
    )
}

pub fn run(args: SettingsArgs) {
    if args.js {
        print!("{}", module());
    } else {
        println!("{}", json!({"settings": settings(), "engines": engines()}));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn flags_become_camel_case_keys() {
        assert_eq!(super::camel("short-side"), "shortSide");
        assert_eq!(super::camel("logit-scale"), "logitScale");
        assert_eq!(super::camel("engine"), "engine");
    }
}
