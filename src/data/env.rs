//! The backup environment a DMA sends with DATA_START_BACKUP: FILESYSTEM resolved under an
//! export root, LEVEL, UPDATE, BASE_DATE/DUMP_DATE tokens, HIST, DIRECT, EXCLUDE.

use crate::error::Refusal;
use crate::wire::types::Pval;
use crate::wire::NdmpError;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Which file history the DMA asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hist {
    /// No file history (HIST=n, or no HIST).
    None,
    /// Inode-based: FH_ADD_DIR + FH_ADD_NODE (HIST=y, d).
    Node,
    /// Path-based: FH_ADD_FILE (HIST=f).
    Path,
}

/// A validated backup environment.
#[derive(Debug, Clone)]
pub struct BackupEnv {
    /// FILESYSTEM, canonical, inside an export root.
    pub filesystem: PathBuf,
    /// LEVEL, 0 to [`MAX_LEVEL`]; 0 when missing.
    pub level: u32,
    /// UPDATE (default yes): record the backup in the dumpdates table once it succeeds.
    pub update: bool,
    /// From a BASE_DATE token: the base date in seconds, overriding the dumpdates table.
    pub base_date: Option<i64>,
    /// HIST: which file history to send.
    pub hist: Hist,
    /// DIRECT (default no). Read, but nothing depends on it: history carries `fh_info` either
    /// way.
    pub direct: bool,
    /// EXCLUDE split at commas: name patterns (`*`, `?`) left out of the backup.
    pub exclude: Vec<String>,
    /// Everything the DMA sent, in order; DATA_GET_ENV returns it with our additions.
    pub received: Vec<Pval>,
}

/// The highest LEVEL accepted.
pub const MAX_LEVEL: u32 = 31;

fn bad<T>(why: String) -> Result<T, Refusal> {
    Err(Refusal {
        error: NdmpError::ILLEGAL_ARGS_ERR,
        why,
    })
}

/// Y/N, T/F, yes/no, true/false, 1/0, any case.
pub fn flag(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" | "t" | "true" | "1" | "on" => Some(true),
        "n" | "no" | "f" | "false" | "0" | "off" => Some(false),
        _ => None,
    }
}

/// HIST: y/t/d/yes/true → node history, f → path history, n/no/false → none. A bare "f"
/// is NDMJOB's and Bareos' "file (path) history", so it is not read as "false" here.
pub fn hist(v: &str) -> Option<Hist> {
    match v.trim().to_ascii_lowercase().as_str() {
        "f" => Some(Hist::Path),
        "d" => Some(Hist::Node),
        other => flag(other).map(|on| if on { Hist::Node } else { Hist::None }),
    }
}

/// Splits a token into (level, seconds): ONTAP packs the level in the upper 32 bits.
pub fn token_parts(token: u64) -> (u32, i64) {
    ((token >> 32) as u32, i64::from(token as u32))
}

/// The DUMP_DATE token of a backup, the inverse of [`token_parts`]: the level in the upper
/// 32 bits, the low 32 bits of the seconds below.
pub fn make_token(level: u32, date: i64) -> u64 {
    (u64::from(level) << 32) | (date as u64 & 0xffff_ffff)
}

/// The value of `name` (case-insensitive; the last one wins), if it is UTF-8.
pub fn lookup<'a>(env: &'a [Pval], name: &str) -> Option<&'a str> {
    lookup_bytes(env, name).and_then(|v| std::str::from_utf8(v).ok())
}

/// The value of `name` as the DMA sent it (case-insensitive; the last one wins): for paths,
/// which need not be UTF-8.
pub fn lookup_bytes<'a>(env: &'a [Pval], name: &str) -> Option<&'a [u8]> {
    env.iter()
        .rev()
        .find(|p| p.name.as_bytes().eq_ignore_ascii_case(name.as_bytes()))
        .map(|p| p.value.as_bytes())
}

/// Validates `env` against the export roots (which must be canonical already).
pub fn parse_backup(env: &[Pval], exports: &[PathBuf]) -> Result<BackupEnv, Refusal> {
    let Some(raw) = lookup_bytes(env, "FILESYSTEM") else {
        return bad("FILESYSTEM is missing from the environment".into());
    };
    let Ok(fs) = std::str::from_utf8(raw) else {
        // dumpdates and the image headers name the file system as text
        let shown = Path::new(std::ffi::OsStr::from_bytes(raw));
        return bad(format!(
            "FILESYSTEM {shown:?} is not UTF-8: this server backs up only UTF-8 paths"
        ));
    };
    let filesystem = resolve(fs, exports)?;
    let level = match lookup(env, "LEVEL").map(str::trim) {
        None | Some("") => 0,
        Some(v) => match v.parse::<u32>() {
            Ok(l) if l <= MAX_LEVEL => l,
            _ => return bad(format!("LEVEL {v:?} is not a level from 0 to {MAX_LEVEL}")),
        },
    };
    let update = match lookup(env, "UPDATE") {
        None => true,
        Some(v) => flag(v).ok_or_else(|| Refusal {
            error: NdmpError::ILLEGAL_ARGS_ERR,
            why: format!("UPDATE {v:?} is not Y or N"),
        })?,
    };
    let base_date = match lookup(env, "BASE_DATE").map(str::trim) {
        None | Some("") | Some("-1") => None,
        Some(v) => match v.parse::<u64>() {
            Ok(t) => Some(token_parts(t).1),
            Err(_) => return bad(format!("BASE_DATE {v:?} is not a token")),
        },
    };
    let hist = match lookup(env, "HIST") {
        None => Hist::None,
        Some(v) => hist(v).ok_or_else(|| Refusal {
            error: NdmpError::ILLEGAL_ARGS_ERR,
            why: format!("HIST {v:?} is not y, d, f or n"),
        })?,
    };
    let direct = lookup(env, "DIRECT").and_then(flag).unwrap_or(false);
    let exclude = lookup(env, "EXCLUDE")
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    Ok(BackupEnv {
        filesystem,
        level,
        update,
        base_date,
        hist,
        direct,
        exclude,
        received: env.to_vec(),
    })
}

/// The export roots as a refusal names them: "/srv/data, /home".
pub fn roots(exports: &[PathBuf]) -> String {
    if exports.is_empty() {
        return "this server has none".into();
    }
    let all: Vec<String> = exports.iter().map(|r| shown(r)).collect();
    all.join(", ")
}

/// A path as words show it: as it is, or quoted and escaped when it has characters (control
/// characters, leading or trailing blanks, commas, quotes) that would blur the sentence.
pub fn shown(p: &Path) -> String {
    let s = p.to_string_lossy();
    let plain = !s.is_empty()
        && s.trim() == s
        && !s
            .chars()
            .any(|c| c.is_control() || matches!(c, '"' | ',' | '(' | ')'))
        && std::str::from_utf8(p.as_os_str().as_bytes()).is_ok();
    if plain {
        s.into_owned()
    } else {
        format!("{p:?}")
    }
}

/// FILESYSTEM must name an existing directory inside an export root once symlinks and `..`
/// are resolved: nothing outside the configured roots is ever opened.
pub fn resolve(fs: &str, exports: &[PathBuf]) -> Result<PathBuf, Refusal> {
    let p = Path::new(fs);
    if !p.is_absolute() {
        return bad(format!("FILESYSTEM {fs:?} is not an absolute path"));
    }
    // Where the path leads, judged from its deepest existing ancestor, before whether it
    // exists: outside the roots, a missing path and an existing one get the same answer,
    // so a DMA cannot probe the rest of the file system.
    let mut existing = p.to_path_buf();
    let mut rest = Vec::new();
    let ancestor = loop {
        match existing.canonicalize() {
            Ok(r) => break Some(r),
            Err(_) => match (existing.file_name(), existing.parent()) {
                (Some(name), Some(parent)) => {
                    rest.push(name.to_owned());
                    existing = parent.to_path_buf();
                }
                _ => break None,
            },
        }
    };
    let lexical = ancestor.map(|mut a| {
        a.extend(rest.iter().rev());
        a
    });
    let inside = |q: &Path| exports.iter().any(|root| q.starts_with(root));
    let outside = || {
        bad(format!(
            "FILESYSTEM {} is not inside an export root ({})",
            shown(p),
            roots(exports)
        ))
    };
    if !lexical.as_deref().is_some_and(inside) {
        return outside();
    }
    let real = match p.canonicalize() {
        Ok(r) => r,
        Err(e) => return bad(format!("FILESYSTEM {}: {e}", shown(p))),
    };
    if !inside(&real) {
        return outside();
    }
    if !real.is_dir() {
        return bad(format!("FILESYSTEM {} is not a directory", shown(p)));
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<Pval> {
        pairs.iter().map(|(n, v)| Pval::new(n, v)).collect()
    }

    #[test]
    fn filesystem_must_resolve_inside_an_export() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        let export = root.join("export");
        std::fs::create_dir_all(export.join("sub")).unwrap();
        std::fs::create_dir_all(root.join("outside")).unwrap();
        std::os::unix::fs::symlink(root.join("outside"), export.join("escape")).unwrap();
        std::fs::write(export.join("file"), b"x").unwrap();
        let ex = vec![export.clone()];
        let fs = |p: &Path| env(&[("FILESYSTEM", p.to_str().unwrap())]);
        assert_eq!(
            parse_backup(&fs(&export.join("sub")), &ex)
                .unwrap()
                .filesystem,
            export.join("sub")
        );
        for bad in [
            root.join("outside"),
            export.join("escape"),
            export.join("sub/../.."),
            export.join("missing"),
            export.join("file"),
            PathBuf::from("relative/path"),
        ] {
            let e = parse_backup(&fs(&bad), &ex).unwrap_err();
            assert_eq!(e.error, NdmpError::ILLEGAL_ARGS_ERR, "{bad:?}");
            assert!(e.why.contains("FILESYSTEM"), "{}", e.why);
        }
        let e = parse_backup(&env(&[("LEVEL", "0")]), &ex).unwrap_err();
        assert!(e.why.contains("missing"));
        // not UTF-8: said so, with the bytes escaped, rather than "missing"
        let mut odd = Pval::new("FILESYSTEM", "");
        odd.value = [export.as_os_str().as_bytes(), b"/caf\xe9"].concat()[..].into();
        let e = parse_backup(&[odd], &ex).unwrap_err();
        assert_eq!(e.error, NdmpError::ILLEGAL_ARGS_ERR);
        assert!(e.why.contains("caf\\xE9\" is not UTF-8"), "{}", e.why);
    }

    #[test]
    fn levels_flags_history_and_tokens() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        let ex = vec![root.clone()];
        let fs = root.to_str().unwrap();
        let p = |extra: &[(&str, &str)]| {
            let mut e = env(&[("FILESYSTEM", fs)]);
            e.extend(env(extra));
            parse_backup(&e, &ex)
        };
        let b = p(&[]).unwrap();
        assert_eq!(
            (b.level, b.update, b.base_date, b.hist, b.direct),
            (0, true, None, Hist::None, false)
        );
        assert_eq!(p(&[("level", "31")]).unwrap().level, 31);
        assert!(p(&[("LEVEL", "32")]).is_err());
        assert!(p(&[("LEVEL", "-1")]).is_err());
        assert!(!p(&[("UPDATE", "f")]).unwrap().update);
        assert!(p(&[("UPDATE", "maybe")]).is_err());
        for (v, h) in [
            ("y", Hist::Node),
            ("Y", Hist::Node),
            ("T", Hist::Node),
            ("d", Hist::Node),
            ("f", Hist::Path),
            ("n", Hist::None),
            ("false", Hist::None),
        ] {
            assert_eq!(p(&[("HIST", v)]).unwrap().hist, h, "{v}");
        }
        assert!(p(&[("HIST", "x")]).is_err());
        let t = make_token(3, 1_700_000_000);
        assert_eq!(token_parts(t), (3, 1_700_000_000));
        assert_eq!(
            p(&[("BASE_DATE", &t.to_string())]).unwrap().base_date,
            Some(1_700_000_000)
        );
        assert_eq!(p(&[("BASE_DATE", "-1")]).unwrap().base_date, None);
        assert_eq!(
            p(&[("EXCLUDE", "*.tmp, cache ,")]).unwrap().exclude,
            vec!["*.tmp", "cache"]
        );
        let b = p(&[("CUSTOM", "kept")]).unwrap();
        assert_eq!(lookup(&b.received, "custom"), Some("kept"));
    }

    #[test]
    fn outside_the_roots_missing_and_existing_paths_get_one_answer() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        let export = root.join("export");
        std::fs::create_dir_all(&export).unwrap();
        std::fs::create_dir_all(root.join("secret")).unwrap();
        let ex = vec![export.clone()];
        let answer = |p: &Path| resolve(p.to_str().unwrap(), &ex).unwrap_err();
        let there = answer(&root.join("secret"));
        let missing = answer(&root.join("secretX"));
        let deep = answer(&root.join("secretX/a/b"));
        assert_eq!(there.error, missing.error);
        for (r, p) in [
            (&there, "secret"),
            (&missing, "secretX"),
            (&deep, "secretX/a/b"),
        ] {
            assert!(r.why.contains("is not inside an export root"), "{}", r.why);
            assert!(r.why.contains(&export.display().to_string()), "{}", r.why);
            assert!(r.why.contains(p), "{}", r.why);
            assert!(!r.why.contains("No such file"), "{}", r.why);
        }
        // inside a root, a missing path is said to be missing
        let inside = answer(&export.join("nothere"));
        assert!(inside.why.contains("No such file"), "{}", inside.why);
    }
}
