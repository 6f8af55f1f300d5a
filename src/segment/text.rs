//! The text side of segmentation: prompt templates, one embedding per class name, and a cache
//! of name embeddings, so that a word is embedded once while it stays in use (the light pass
//! of interactive use: adding one label embeds only that label).
//!
//! `IMAGENET_80` are the 80 ImageNet templates of the CLIP paper's prompt engineering notebook
//! (openai/CLIP `notebooks/Prompt_Engineering_for_ImageNet.ipynb`), the set the dense-CLIP
//! papers use. `IMAGENET_7` are the 7 that the same notebook's sequential forward selection
//! over those 80 kept ("a bit better than the full 80 ensemble", on ImageNet): the dense
//! engine's default, because with 80 the text side of a first segmentation cost about three
//! times the image side (`wordmask bench --segment`). `SINGLE` is the cheap mode, `BARE` uses
//! each label as typed.

use std::collections::HashMap;

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::result::BACKGROUND;
use crate::error::{Error, Result};
use crate::labels::Label;
use crate::network::Network;
use crate::nn::l2_normalize;
use crate::tokenizer::Tokenizer;

/// Prompts embedded per text-encoder call.
const TEXT_BATCH: usize = 256;

/// Which prompt templates each label is put into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum), value(rename_all = "lower"))]
#[serde(rename_all = "lowercase")]
pub enum Templates {
    /// The 80 ImageNet templates of the CLIP paper (the dense-CLIP papers' setting).
    Imagenet80,
    /// The 7 of those 80 that sequential forward selection kept (CLIP's notebook).
    Imagenet7,
    /// "a photo of a {}."
    Single,
    /// Each label as typed (for labels that are whole prompts).
    Bare,
    /// The 32 templates of Fusioner's text encoder.
    Fusioner,
}

impl Templates {
    pub fn prompts(self) -> &'static [&'static str] {
        match self {
            Templates::Imagenet80 => &IMAGENET_80,
            Templates::Imagenet7 => &IMAGENET_7,
            Templates::Single => &SINGLE,
            Templates::Bare => &BARE,
            Templates::Fusioner => &FUSIONER_32,
        }
    }
}

/// The one template of the cheap mode.
pub const SINGLE: [&str; 1] = ["a photo of a {}."];

/// Each label used as typed, for labels that are whole prompts already.
pub const BARE: [&str; 1] = ["{}"];

/// Fusioner's 32 templates (`model/text_encoder.py`, `{category}` written `{}`).
pub const FUSIONER_32: [&str; 32] = [
    "a bad photo of the {}.",
    "a photo of the large {}.",
    "a photo of the small {}.",
    "a cropped photo of a {}.",
    "This is a photo of a {}",
    "This is a photo of a small {}",
    "This is a photo of a medium {}",
    "This is a photo of a large {}",
    "This is a masked photo of a {}",
    "This is a masked photo of a small {}",
    "This is a masked photo of a medium {}",
    "This is a masked photo of a large {}",
    "This is a cropped photo of a {}",
    "This is a cropped photo of a small {}",
    "This is a cropped photo of a medium {}",
    "This is a cropped photo of a large {}",
    "A photo of a {} in the scene",
    "a bad photo of the {} in the scene",
    "a photo of the large {} in the scene",
    "a photo of the small {} in the scene",
    "a cropped photo of a {} in the scene",
    "a photo of a masked {} in the scene",
    "There is a {} in the scene",
    "There is the {} in the scene",
    "This is a {} in the scene",
    "This is the {} in the scene",
    "This is one {} in the scene",
    "There is a masked {} in the scene",
    "There is the masked {} in the scene",
    "This is a masked {} in the scene",
    "This is the masked {} in the scene",
    "This is one masked {} in the scene",
];

/// CLIP's 7-template ensemble, in the order the notebook's forward selection picked them.
pub const IMAGENET_7: [&str; 7] = [
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
];

pub const IMAGENET_80: [&str; 80] = [
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a plushie {}.",
    "a photo of the nice {}.",
    "a photo of the small {}.",
    "a photo of the weird {}.",
    "the cartoon {}.",
    "art of the {}.",
    "a drawing of the {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "the plushie {}.",
    "a dark photo of a {}.",
    "itap of a {}.",
    "graffiti of the {}.",
    "a toy {}.",
    "itap of my {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "a tattoo of the {}.",
];

/// What embeds the words: a network's text tower and its tokenizer (a loaded
/// [`super::Model`] is one).
pub trait TextEncoder {
    fn text_network(&self) -> &dyn Network;
    fn tokenizer(&self) -> &Tokenizer;
}

/// Text side of a label set: one embedding per name (synonym), and the class of each name.
#[derive(Debug, Clone)]
pub struct ClassEmbeddings {
    /// `[names, proj]`, each the renormalised mean of its L2-normalised template embeddings.
    pub names: Tensor<2>,
    /// Class index of each name row; names of one class are contiguous.
    pub class_of_name: Vec<usize>,
    pub num_classes: usize,
    /// Whether the last class holds background words (added after the user's labels).
    pub background: bool,
}

impl ClassEmbeddings {
    /// Embed every synonym of every label with every template; `background` words, if any,
    /// form one more class after the labels.
    pub fn new(model: &dyn TextEncoder, labels: &[Label], background: &[String], templates: &[&str]) -> Result<Self> {
        let set = NameSet::new(labels, background, templates)?;
        let words: Vec<&str> = set.names.iter().map(|(_, name)| name.as_str()).collect();
        let names = name_embeddings(model.text_network(), model.tokenizer(), &words, templates)?;
        Ok(set.into_classes(names))
    }
}

/// The names (synonyms) of a label set, each with its class; background words last.
struct NameSet {
    names: Vec<(usize, String)>,
    num_classes: usize,
    background: bool,
}

impl NameSet {
    fn new(labels: &[Label], background: &[String], templates: &[&str]) -> Result<Self> {
        if templates.is_empty() {
            return Err(Error::invalid("no prompt templates"));
        }
        let mut labels = labels.to_vec();
        if !background.is_empty() {
            labels.push(Label { name: BACKGROUND.into(), synonyms: background.to_vec() });
        }
        let names: Vec<(usize, String)> =
            labels.iter().enumerate().flat_map(|(c, l)| l.synonyms.iter().map(move |n| (c, n.clone()))).collect();
        if names.is_empty() {
            return Err(Error::invalid("no labels to embed"));
        }
        Ok(NameSet { names, num_classes: labels.len(), background: !background.is_empty() })
    }

    fn into_classes(self, names: Tensor<2>) -> ClassEmbeddings {
        ClassEmbeddings {
            names,
            class_of_name: self.names.iter().map(|(c, _)| *c).collect(),
            num_classes: self.num_classes,
            background: self.background,
        }
    }
}

/// Each name put into every template and embedded, the L2-normalised prompt embeddings
/// averaged and renormalised. `-> [names, proj]`
pub fn name_embeddings(
    network: &dyn Network,
    tokenizer: &Tokenizer,
    names: &[&str],
    templates: &[&str],
) -> Result<Tensor<2>> {
    // Every (name, template) prompt, batched across names: one short prompt per call would
    // leave the text encoder mostly idle.
    let prompts: Vec<String> =
        names.iter().flat_map(|name| templates.iter().map(move |t| t.replace("{}", name))).collect();
    let mut parts = Vec::new();
    for chunk in prompts.chunks(TEXT_BATCH) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        parts.push(network.embed_texts(tokenizer, &refs)?);
    }
    let all = Tensor::cat(parts, 0);
    let (n, t, d) = (names.len(), templates.len(), all.dims()[1]);
    Ok(l2_normalize(all.reshape([n, t, d]).sum_dim(1).reshape([n, d])))
}

/// Name embeddings, computed once per (templates, name) and reused while the name stays in
/// use: a label set that gains a word embeds only that word. Belongs to one model.
#[derive(Default)]
pub struct EmbeddingCache {
    /// `[1, proj]` per (templates, name), with the tick of its last use.
    entries: HashMap<(TemplateKey, String), (Tensor<2>, u64)>,
    /// Entries computed here and not yet handed out by [`EmbeddingCache::take_new`].
    new: Vec<(TemplateKey, String)>,
    tick: u64,
    /// How many times the text encoder actually ran (tests and diagnostics).
    pub computed: usize,
    /// How many names it embedded in those runs.
    pub names_embedded: usize,
}

/// A template set, as its prompts joined (sets differ in their text, not their names).
type TemplateKey = String;

impl EmbeddingCache {
    /// Names remembered at once (each `proj` floats); the least recently used go first.
    const CAPACITY: usize = 4096;

    pub fn get(
        &mut self,
        model: &dyn TextEncoder,
        labels: &[Label],
        background: &[String],
        templates: &[&str],
    ) -> Result<ClassEmbeddings> {
        let set = NameSet::new(labels, background, templates)?;
        let key = templates.join("\u{1f}");
        self.tick += 1;
        let mut missing: Vec<&str> = Vec::new();
        for (_, name) in &set.names {
            match self.entries.get_mut(&(key.clone(), name.clone())) {
                Some(entry) => entry.1 = self.tick,
                None if !missing.contains(&name.as_str()) => missing.push(name),
                None => {}
            }
        }
        if !missing.is_empty() {
            let fresh = name_embeddings(model.text_network(), model.tokenizer(), &missing, templates)?;
            let d = fresh.dims()[1];
            self.computed += 1;
            self.names_embedded += missing.len();
            for (i, name) in missing.iter().enumerate() {
                let row = fresh.clone().slice([i..i + 1, 0..d]);
                self.entries.insert((key.clone(), name.to_string()), (row, self.tick));
                self.new.push((key.clone(), name.to_string()));
            }
        }
        let rows: Vec<Tensor<2>> =
            set.names.iter().map(|(_, name)| self.entries[&(key.clone(), name.clone())].0.clone()).collect();
        self.evict();
        Ok(set.into_classes(Tensor::cat(rows, 0)))
    }

    /// The embeddings computed since the last call, `(template set, name, [1, proj])`, for a
    /// store that outlives this cache (the page keeps them across visits).
    pub fn take_new(&mut self) -> Vec<(String, String, Tensor<2>)> {
        std::mem::take(&mut self.new)
            .into_iter()
            .filter_map(|key| self.entries.get(&key).map(|(row, _)| (key.0.clone(), key.1.clone(), row.clone())))
            .collect()
    }

    /// Remember an embedding computed earlier (`row`: `[1, proj]`) under the template set's
    /// key (as [`EmbeddingCache::take_new`] gave it).
    pub fn insert(&mut self, templates: String, name: String, row: Tensor<2>) {
        self.entries.insert((templates, name), (row, 0));
        self.evict();
    }

    /// Drop the least recently used names above the capacity (never those of the current set,
    /// which carry the newest tick).
    fn evict(&mut self) {
        if self.entries.len() <= Self::CAPACITY {
            return;
        }
        let mut ticks: Vec<u64> = self.entries.values().map(|(_, t)| *t).collect();
        ticks.sort_unstable();
        let cut = ticks[self.entries.len() - Self::CAPACITY];
        let current = self.tick;
        self.entries.retain(|_, (_, t)| *t >= cut || *t == current);
    }
}
