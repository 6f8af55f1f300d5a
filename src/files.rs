//! Writing the files a user names without losing one: every output is checked before any work
//! (its format, that it is none of the inputs, that its folder exists), then written to a
//! temporary file in the same folder, flushed to the disk and renamed over the old one, so a
//! full disk, a crash or a killed process leaves the old file as it was and no partial file.
//! Folders a command fills (a converted or trained checkpoint) are refused when they are an
//! input or already hold a model, unless the user asks for it to be replaced.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Write `path` through `write`, atomically: a temporary file beside it, synced, then renamed
/// into place. On any error the temporary file is removed and `path` is untouched.
pub fn write_atomic(path: &Path, write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>) -> Result<()> {
    let failed = |e: std::io::Error| Error::Io(format!("cannot write {}: {e}", path.display()));
    let name = path.file_name().ok_or_else(|| Error::invalid(format!("{} names no file", path.display())))?;
    let tmp = path.with_file_name(format!(".{}.{}.partial", name.to_string_lossy(), std::process::id()));
    let written = (|| {
        let mut out = BufWriter::new(File::create(&tmp)?);
        write(&mut out)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        std::fs::remove_file(&tmp).ok();
        return Err(failed(e));
    }
    Ok(())
}

/// [`write_atomic`] of bytes already in memory.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |out| out.write_all(bytes))
}

/// Whether `a` and `b` name the same existing file or folder (through links and `..`).
pub fn same(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// `path` as it will be once it exists: its folder resolved, the name kept (so that an output
/// not written yet compares with others).
fn resolved(path: &Path) -> PathBuf {
    if let Ok(full) = path.canonicalize() {
        return full;
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    match (parent.canonicalize(), path.file_name()) {
        (Ok(folder), Some(name)) => folder.join(name),
        _ => path.to_path_buf(),
    }
}

/// A file a command will write: the option that names it (for messages), its path, and the
/// extensions it may have, the first the preferred one.
pub struct Output<'a> {
    pub option: &'static str,
    pub path: &'a Path,
    pub extensions: &'static [&'static str],
    /// What it holds, for the message about a wrong extension ("a label map").
    pub what: &'static str,
    /// Why other formats are refused, when it matters ("a lossy format would change class
    /// indices").
    pub why: &'static str,
}

/// Check every output before any work: a known extension, an existing folder, not a folder
/// itself, none of the `inputs`, and no two outputs the same file.
pub fn check_outputs(outputs: &[Output<'_>], inputs: &[&Path]) -> Result<()> {
    for (i, out) in outputs.iter().enumerate() {
        let shown = out.path.display();
        let extension = out.path.extension().map(|e| e.to_string_lossy().to_lowercase()).unwrap_or_default();
        if !out.extensions.contains(&extension.as_str()) {
            let allowed: Vec<String> = out.extensions.iter().map(|e| format!(".{e}")).collect();
            let why = if out.why.is_empty() { String::new() } else { format!(" ({})", out.why) };
            return Err(Error::invalid(format!(
                "{} {shown}: {} is written as {}{why}",
                out.option,
                out.what,
                allowed.join(" or ")
            )));
        }
        if out.path.is_dir() {
            return Err(Error::invalid(format!("{} {shown} is a folder; name a file", out.option)));
        }
        let folder = out.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !folder.is_dir() {
            return Err(Error::invalid(format!(
                "{} {shown}: the folder {} does not exist",
                out.option,
                folder.display()
            )));
        }
        if let Some(input) = inputs.iter().find(|input| same(out.path, input)) {
            return Err(Error::invalid(format!(
                "{} {shown} is an input ({}): writing it would destroy it; name another file",
                out.option,
                input.display()
            )));
        }
        if let Some(other) = outputs[..i].iter().find(|o| resolved(o.path) == resolved(out.path)) {
            return Err(Error::invalid(format!("{} and {} both name {shown}", other.option, out.option)));
        }
    }
    Ok(())
}

/// A folder a command fills with a checkpoint (`config.json` and its weights), checked before
/// any work: not one of the `inputs` (nor inside one's folder tree as its own folder), and not
/// a folder that already holds a model unless `replace` (the user's `--force`, or a training
/// run going on in its own folder).
pub fn check_model_folder(option: &str, dir: &Path, inputs: &[&Path], replace: bool) -> Result<()> {
    let shown = dir.display();
    if dir.exists() && !dir.is_dir() {
        return Err(Error::invalid(format!("{option} {shown} is a file; name a folder")));
    }
    for input in inputs {
        let folder = if input.is_dir() { Some(input.to_path_buf()) } else { input.parent().map(Path::to_path_buf) };
        if same(dir, input) || folder.is_some_and(|f| same(dir, &f)) {
            return Err(Error::invalid(format!(
                "{option} {shown} holds an input ({}): writing there would change it; name another folder",
                input.display()
            )));
        }
    }
    if !replace && dir.join("config.json").is_file() {
        return Err(Error::invalid(format!(
            "{option} {shown} already holds a model (config.json): name another folder, or pass --force to replace it"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wordmask-files-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_partial_one() {
        let dir = scratch("atomic");
        let path = dir.join("labels.png");
        std::fs::write(&path, b"the old file").unwrap();
        let err = write_atomic(&path, |out| {
            out.write_all(b"half")?;
            Err(std::io::Error::other("the disk is full"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("the disk is full"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"the old file");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("labels.png")], "no partial file left");
        write_bytes(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn outputs_are_checked_against_the_inputs_and_each_other() {
        let dir = scratch("outputs");
        let photo = dir.join("photo.png");
        std::fs::write(&photo, b"x").unwrap();
        let png = |option, path| Output { option, path, extensions: &["png"], what: "a label map", why: "" };
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let over = dir.join("sub/../photo.png");
        let err = check_outputs(&[png("--out", &over)], &[&photo]).unwrap_err().to_string();
        assert!(err.contains("is an input"), "{err}");
        let jpg = dir.join("labels.jpg");
        let err = check_outputs(&[png("--out", &jpg)], &[&photo]).unwrap_err().to_string();
        assert!(err.contains("is written as .png"), "{err}");
        let (a, b) = (dir.join("a.png"), dir.join("./a.png"));
        let err = check_outputs(&[png("--out", &a), png("--overlay", &b)], &[&photo]).unwrap_err().to_string();
        assert!(err.contains("--out and --overlay both name"), "{err}");
        let missing = dir.join("no/such/a.png");
        assert!(check_outputs(&[png("--out", &missing)], &[]).unwrap_err().to_string().contains("does not exist"));
        check_outputs(&[png("--out", &a)], &[&photo]).unwrap();
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn model_folders_are_not_inputs_nor_other_models() {
        let dir = scratch("folders");
        let model = dir.join("clip");
        std::fs::create_dir_all(&model).unwrap();
        std::fs::write(model.join("config.json"), "{}").unwrap();
        let weights = model.join("model.safetensors");
        std::fs::write(&weights, b"w").unwrap();
        let err = check_model_folder("--out", &model, &[&weights], true).unwrap_err().to_string();
        assert!(err.contains("holds an input"), "{err}");
        let err = check_model_folder("--out", &model, &[], false).unwrap_err().to_string();
        assert!(err.contains("already holds a model") && err.contains("--force"), "{err}");
        check_model_folder("--out", &model, &[], true).unwrap();
        check_model_folder("--out", &dir.join("new"), &[&weights], false).unwrap();
        std::fs::remove_dir_all(&dir).ok();
    }
}
