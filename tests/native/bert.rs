//! BERT, the language-only text encoder: the WordPiece ids equal transformers' `BertTokenizer`'s
//! on 447 strings, and the tower's features equal `BertModel`'s on a random-weight checkpoint,
//! on both backends (tests/fixtures/bert-tiny, written by tools/bert_reference.py).

use crate::common::{self, HIDDEN_REL_TOL, all_close, backends, to_vec};

use wordmask::bert::{BertConfig, BertModel, Pooling, WordPiece};
use wordmask::checkpoint::Checkpoint;
use wordmask::fusioner::BertTower;
use wordmask::loader::{self, WeightLoader};

fn fixture(file: &str) -> std::path::PathBuf {
    common::fixtures().join("bert-tiny").join(file)
}

fn cases() -> Vec<(String, Vec<u32>)> {
    let text = std::fs::read_to_string(fixture("tokenizer_cases.jsonl")).unwrap();
    text.lines()
        .map(|line| {
            let case: serde_json::Value = serde_json::from_str(line).unwrap();
            let ids = case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
            (case["text"].as_str().unwrap().to_string(), ids)
        })
        .collect()
}

fn differences(tokenizer: &WordPiece, cases: &[(String, Vec<u32>)]) -> Vec<String> {
    cases
        .iter()
        .filter_map(|(text, want)| {
            let got = tokenizer.encode(text);
            (got != *want).then(|| format!("{text:?}\n  ours:      {got:?}\n  reference: {want:?}"))
        })
        .collect()
}

#[test]
fn wordpiece_ids_match_transformers_from_vocab_txt_and_tokenizer_json() {
    let cases = cases();
    assert!(cases.len() >= 400, "only {} cases", cases.len());
    let from_txt = WordPiece::from_vocab_txt(&std::fs::read_to_string(fixture("vocab.txt")).unwrap(), true).unwrap();
    let from_json =
        WordPiece::from_tokenizer_json(&std::fs::read_to_string(fixture("tokenizer.json")).unwrap()).unwrap();
    for (name, tokenizer) in [("vocab.txt", &from_txt), ("tokenizer.json", &from_json)] {
        let failures = differences(tokenizer, &cases);
        assert!(
            failures.is_empty(),
            "{name}: {} of {} strings differ:\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n")
        );
    }
    // Negative control: a cased reading of the uncased vocabulary must disagree.
    let cased = WordPiece::from_vocab_txt(&std::fs::read_to_string(fixture("vocab.txt")).unwrap(), false).unwrap();
    assert!(differences(&cased, &cases).len() > 50, "the cased tokenizer agrees: the cases do not test lower-casing");
}

fn load(device: &burn::tensor::Device, hook: Option<&str>) -> BertModel {
    let config = BertConfig::from_value(
        &serde_json::from_str(&std::fs::read_to_string(fixture("config.json")).unwrap()).unwrap(),
    )
    .unwrap();
    let bytes = std::fs::read(fixture("model.safetensors")).unwrap();
    let checkpoint = Checkpoint::from_bytes(&bytes, "model.safetensors").unwrap();
    match hook {
        None => loader::load(&checkpoint, device, "BertModel", |l| Ok(BertModel::load(l, config.clone()))).unwrap(),
        Some(name) => {
            let name = name.to_string();
            let mut l = WeightLoader::new(&checkpoint, device, "BertModel").with_hook(move |n, v| {
                if n == name {
                    v.iter_mut().for_each(|x| *x += 0.05);
                }
            });
            let model = BertModel::load(&mut l, config);
            l.finish().unwrap();
            model
        }
    }
}

#[test]
fn tower_matches_transformers_bert_model_on_both_backends() {
    let reference = common::Reference::load("bert-tiny");
    let names: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("reference.json")).unwrap()).unwrap();
    let names: Vec<&str> = names["names"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    let tokenizer = WordPiece::from_vocab_txt(&std::fs::read_to_string(fixture("vocab.txt")).unwrap(), true).unwrap();
    for (backend, device) in backends() {
        let model = load(&device, None);
        let perturbed = load(&device, Some("encoder.layer.1.attention.self.value.weight"));
        assert!(model.has_pooler());
        for (i, name) in names.iter().enumerate() {
            let ids = tokenizer.encode(name);
            let (want_ids, _) = reference.get(&format!("ids.{i}"));
            assert_eq!(ids.iter().map(|&t| t as f32).collect::<Vec<_>>(), want_ids, "{name}: ids");
            let what = format!("{backend:?} {name:?}");
            let (hidden, _) = reference.get(&format!("last_hidden_state.{i}"));
            let (pooled, _) = reference.get(&format!("pooler_output.{i}"));
            let ours = to_vec(model.forward(&ids).unwrap()).unwrap();
            all_close(&format!("{what} last_hidden_state"), &ours, &hidden, HIDDEN_REL_TOL, true).unwrap();
            let ours_pooled = to_vec(model.embed(&ids, Pooling::Cls).unwrap()).unwrap();
            all_close(&format!("{what} pooler_output"), &ours_pooled, &pooled, HIDDEN_REL_TOL, true).unwrap();
            // Mean pooling is the mean of the reference's features.
            let d = pooled.len();
            let mean: Vec<f32> =
                (0..d).map(|j| hidden.iter().skip(j).step_by(d).sum::<f32>() / (hidden.len() / d) as f32).collect();
            let ours_mean = to_vec(model.embed(&ids, Pooling::Mean).unwrap()).unwrap();
            all_close(&format!("{what} mean pooling"), &ours_mean, &mean, HIDDEN_REL_TOL, true).unwrap();
            // Negative control: the last layer's value weights shifted must be seen.
            let off = to_vec(perturbed.forward(&ids).unwrap()).unwrap();
            assert!(
                all_close("perturbed", &off, &hidden, HIDDEN_REL_TOL, true).is_err(),
                "{what}: shifted value weights passed"
            );
        }
    }
}

#[test]
fn bad_ids_and_configs_are_refused_with_reasons() {
    let device = wordmask::device::open(wordmask::Backend::Cpu).unwrap();
    let model = load(&device, None);
    let too_long = vec![5u32; model.config.max_position_embeddings + 1];
    let e = model.forward(&too_long).unwrap_err().to_string();
    assert!(e.contains("1 to 64 tokens"), "{e}");
    let e = model.forward(&[5, 99_999, 6]).unwrap_err().to_string();
    assert!(e.contains("token id 99999 is outside the vocabulary"), "{e}");
    let e = BertConfig::from_value(&serde_json::json!({"model_type": "clip"})).unwrap_err().to_string();
    assert!(e.contains("expected 'bert'"), "{e}");
    let e =
        BertConfig::from_value(&serde_json::json!({"model_type": "bert", "hidden_size": 30, "num_attention_heads": 4}))
            .unwrap_err()
            .to_string();
    assert!(e.contains("divisible by num_attention_heads"), "{e}");
}

/// The hub's pre-training checkpoints (`bert-base-uncased`) hold the encoder under `bert.`, the
/// masked-language and next-sentence heads under `cls.`, and older ones name layer norms
/// `gamma`/`beta`: the same tower must come out.
#[test]
fn the_hubs_pretraining_layout_loads_the_same_tower() {
    let bytes = std::fs::read(fixture("model.safetensors")).unwrap();
    let checkpoint = Checkpoint::from_bytes(&bytes, "model.safetensors").unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = checkpoint
        .names()
        .map(|n| {
            let renamed = n.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta");
            (format!("bert.{renamed}"), checkpoint.get(n).unwrap().shape.clone(), checkpoint.read_f32(n).unwrap())
        })
        .collect();
    tensors.push(("cls.predictions.bias".into(), vec![4], vec![0.5; 4]));
    tensors.push(("cls.seq_relationship.weight".into(), vec![2, 32], vec![0.1; 64]));
    let hub = wordmask::checkpoint::write_safetensors(&tensors).unwrap();
    let hub = Checkpoint::from_bytes(&hub, "hub.safetensors").unwrap();
    let config = BertConfig::from_value(
        &serde_json::from_str(&std::fs::read_to_string(fixture("config.json")).unwrap()).unwrap(),
    )
    .unwrap();
    let device = wordmask::device::open(wordmask::Backend::Cpu).unwrap();
    let model = loader::load(&hub, &device, "BertModel", |l| Ok(BertModel::load(l, config.clone()))).unwrap();
    let ids = [5, 349, 6];
    let ours = to_vec(model.forward(&ids).unwrap()).unwrap();
    let plain = to_vec(load(&device, None).forward(&ids).unwrap()).unwrap();
    assert_eq!(ours, plain);
    // A key the tower does not know is still reported.
    tensors.push(("bert.encoder.layer.9.output.dense.weight".into(), vec![1], vec![0.0]));
    let extra = wordmask::checkpoint::write_safetensors(&tensors).unwrap();
    let extra = Checkpoint::from_bytes(&extra, "extra.safetensors").unwrap();
    let e = loader::load(&extra, &device, "BertModel", |l| Ok(BertModel::load(l, config.clone())))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("bert.encoder.layer.9.output.dense.weight"), "{e}");
}

/// Fusioner's BERT text encoder runs texts of one length side by side and gives the rows back in
/// the texts' order: each row equals the text embedded alone, under either pooling.
#[test]
fn texts_of_several_lengths_embed_as_each_alone() {
    let device = wordmask::device::open(wordmask::Backend::Cpu).unwrap();
    let model = load(&device, None);
    let tokenizer = WordPiece::from_vocab_txt(&std::fs::read_to_string(fixture("vocab.txt")).unwrap(), true).unwrap();
    let texts = ["cat", "a photo of a dog.", "traffic light", "dog", "a photo of a cat."];
    let ids: Vec<Vec<u32>> = texts.iter().map(|t| tokenizer.encode(t)).collect();
    let d = model.config.hidden_size;
    for pooling in [Pooling::Cls, Pooling::Mean] {
        let tower = BertTower { model: model.clone(), tokenizer: tokenizer.clone(), pooling };
        let all = to_vec(tower.features(&ids).unwrap()).unwrap();
        for (i, row) in ids.iter().enumerate() {
            let alone = to_vec(model.embed(row, pooling).unwrap()).unwrap();
            all_close(&format!("{pooling} {:?}", texts[i]), &all[i * d..(i + 1) * d], &alone, 1e-5, true).unwrap();
        }
    }
}
