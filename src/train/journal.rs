//! Saving an epoch so that a crash never leaves its files out of step. The epoch's files
//! (weights, optimiser state, config) are first written whole under temporary names beside the
//! real ones; then `train_state.json`, written last, commits them, naming each with its length
//! and hash; then they are moved into place. A run cut off before the commit leaves the last
//! committed epoch as it was (its temporary files are dropped by the next run in the folder); one
//! cut off after it is finished by the next run ([`recover`]), which also refuses a folder whose
//! files no longer match the state that names them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::TrainState;
use crate::error::{Error, Result};
use crate::files::write_bytes;

const STATE: &str = "train_state.json";

/// A file's length and 64-bit FNV-1a hash, as the state that commits it records them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub bytes: u64,
    pub fnv: String,
}

impl Stamp {
    fn of(data: &[u8]) -> Self {
        let hash =
            data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
        Stamp { bytes: data.len() as u64, fnv: format!("{hash:016x}") }
    }
}

/// Where `name`'s next version waits for its commit.
fn staged(out: &Path, name: &str) -> PathBuf {
    out.join(format!(".{name}.next"))
}

/// Write an epoch's `files` (name, bytes), commit them in `state` and move them into place.
pub fn save_epoch(out: &Path, state: &mut TrainState, files: &[(&str, &[u8])]) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| Error::Io(format!("cannot create {}: {e}", out.display())))?;
    for (name, data) in files {
        write_bytes(&staged(out, name), data)?;
    }
    state.files = files.iter().map(|(name, data)| (name.to_string(), Stamp::of(data))).collect();
    let text = serde_json::to_string_pretty(state).map_err(|e| Error::invalid(e.to_string()))?;
    write_bytes(&out.join(STATE), text.as_bytes())?;
    move_into_place(out, &state.files)
}

fn move_into_place(out: &Path, files: &BTreeMap<String, Stamp>) -> Result<()> {
    for name in files.keys() {
        let next = staged(out, name);
        if next.exists() {
            std::fs::rename(&next, out.join(name))
                .map_err(|e| Error::Io(format!("cannot move {} into place: {e}", next.display())))?;
        }
    }
    Ok(())
}

/// Put the folder back in step after a run that was cut off while saving: staged files that
/// the state commits are moved into place, staged files it does not commit are removed, and
/// every committed file must then be the one the state names.
pub fn recover(out: &Path) -> Result<()> {
    let text = match std::fs::read_to_string(out.join(STATE)) {
        Ok(text) => text,
        Err(_) => return remove_staged(out),
    };
    let Ok(state) = serde_json::from_str::<TrainState>(&text) else {
        return Ok(()); // reported, with its reason, when the state is read to resume
    };
    let committed: BTreeMap<String, Stamp> = state
        .files
        .iter()
        .filter(|(name, stamp)| std::fs::read(staged(out, name)).is_ok_and(|data| &Stamp::of(&data) == *stamp))
        .map(|(name, stamp)| (name.clone(), stamp.clone()))
        .collect();
    move_into_place(out, &committed)?;
    remove_staged(out)?;
    for (name, stamp) in &state.files {
        let data = std::fs::read(out.join(name)).unwrap_or_default();
        if &Stamp::of(&data) != stamp {
            return Err(Error::invalid(format!(
                "{} is not the file {STATE} in {} names for epoch {}: the folder was changed after training; \
                 start again elsewhere (or with --force)",
                name,
                out.display(),
                state.epochs_done
            )));
        }
    }
    Ok(())
}

/// Remove the staged files left by a save that did not commit.
fn remove_staged(out: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(out) else { return Ok(()) };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(".next") {
            std::fs::remove_file(entry.path())
                .map_err(|e| Error::Io(format!("cannot remove {}: {e}", entry.path().display())))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::{Hyper, TrainOptions};

    fn state() -> TrainState {
        let options = TrainOptions {
            hyper: Hyper::default(),
            batch_size: 1,
            micro_batch: 1,
            views: 0,
            seed: 0,
            trained: vec![1],
            class_names: vec!["a".into(), "b".into()],
        };
        TrainState {
            epochs_done: 0,
            steps_per_epoch: 1,
            options,
            backbone: "b".into(),
            losses: vec![],
            files: BTreeMap::new(),
        }
    }

    fn folder(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wordmask-journal-{name}-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn read(dir: &Path, name: &str) -> Vec<u8> {
        std::fs::read(dir.join(name)).unwrap()
    }

    #[test]
    fn a_committed_epoch_cut_off_before_its_files_moved_is_finished() {
        let dir = folder("committed");
        let mut s = state();
        save_epoch(&dir, &mut s, &[("model.safetensors", b"epoch 1"), ("optimizer.safetensors", b"moments 1")])
            .unwrap();
        // Epoch 2 staged and committed, then the process dies before the renames.
        write_bytes(&staged(&dir, "model.safetensors"), b"epoch 2").unwrap();
        write_bytes(&staged(&dir, "optimizer.safetensors"), b"moments 2").unwrap();
        s.epochs_done = 2;
        s.files = [("model.safetensors", &b"epoch 2"[..]), ("optimizer.safetensors", &b"moments 2"[..])]
            .iter()
            .map(|(n, d)| (n.to_string(), Stamp::of(d)))
            .collect();
        write_bytes(&dir.join(STATE), serde_json::to_string(&s).unwrap().as_bytes()).unwrap();
        assert_eq!(read(&dir, "model.safetensors"), b"epoch 1", "out of step before recovery");
        recover(&dir).unwrap();
        assert_eq!(read(&dir, "model.safetensors"), b"epoch 2");
        assert_eq!(read(&dir, "optimizer.safetensors"), b"moments 2");
        assert!(!staged(&dir, "model.safetensors").exists());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn an_uncommitted_epoch_is_dropped_and_a_changed_folder_refused() {
        let dir = folder("uncommitted");
        let mut s = state();
        save_epoch(&dir, &mut s, &[("model.safetensors", b"epoch 1"), ("optimizer.safetensors", b"moments 1")])
            .unwrap();
        // Epoch 2's weights staged, the process dies before the commit.
        write_bytes(&staged(&dir, "model.safetensors"), b"epoch 2").unwrap();
        recover(&dir).unwrap();
        assert_eq!(read(&dir, "model.safetensors"), b"epoch 1", "the committed epoch stays");
        assert!(!staged(&dir, "model.safetensors").exists(), "the uncommitted file is gone");
        // A weights file replaced after training no longer matches the state.
        std::fs::write(dir.join("optimizer.safetensors"), b"someone else's").unwrap();
        let err = recover(&dir).unwrap_err().to_string();
        assert!(err.contains("optimizer.safetensors is not the file"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
