//! Where a restore may write: the checks that keep every recover destination inside one
//! export root, and the plan (selections, destinations) a DATA_START_RECOVER becomes.

use super::env;
use crate::error::{refuse, Refusal};
use crate::format::recover::{RecoverOptions, Selection};
use crate::wire::messages::DataStartRecoverRequest;
use crate::wire::{NdmpError, NdmpString};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// What a recover request asks for, checked against the export roots.
#[derive(Debug)]
pub struct RecoverPlan {
    /// The selections, and the root the reader creates everything below.
    pub opts: RecoverOptions,
    /// Each nlist entry's path in the image ("sub/b.txt", "." for the root) with its
    /// original path exactly as the DMA sent it, which its LOG_FILE must name.
    pub nlist: Vec<(Vec<u8>, NdmpString)>,
}

/// Checks a DATA_START_RECOVER against the export roots (canonical already). Every nlist
/// destination must lie inside one export root, which becomes the reader's root; without an
/// nlist, PREFIX (or else FILESYSTEM) names the directory the whole image goes into. Names
/// stay bytes throughout: they need not be UTF-8, and are not escaped or replaced.
pub fn recover_plan(
    r: &DataStartRecoverRequest,
    exports: &[PathBuf],
) -> Result<RecoverPlan, Refusal> {
    // existing files are kept unless the DMA says FORCE=Y (README, "Restoring")
    let keep_existing = !env::lookup(&r.env, "FORCE")
        .and_then(env::flag)
        .unwrap_or(false);
    let opts = |select, dest_root| RecoverOptions {
        select,
        dest_root,
        restore_owner: true,
        keep_existing,
        ended: None,
    };
    if r.nlist.is_empty() {
        let found = ["PREFIX", "FILESYSTEM"]
            .into_iter()
            .find_map(|var| env::lookup_bytes(&r.env, var).map(|v| (var, v)));
        let Some((var, value)) = found else {
            return bad("no nlist and no PREFIX or FILESYSTEM to restore into".into());
        };
        let given = Path::new(OsStr::from_bytes(value));
        let (dest, _) = checked_dest(var, given, exports)?;
        // the reader opens its root following symlinks: only a directory, or nothing yet
        if dest.symlink_metadata().is_ok() && !dest.is_dir() {
            return bad(format!("{var} {given:?} is not a directory"));
        }
        return Ok(RecoverPlan {
            opts: opts(Vec::new(), dest),
            nlist: Vec::new(),
        });
    }
    // the export root of the first destination, and that destination, for the refusal
    let mut first: Option<(PathBuf, &Path)> = None;
    let mut select = Vec::new();
    let mut nlist = Vec::new();
    for n in &r.nlist {
        let given = Path::new(OsStr::from_bytes(n.destination_path.as_bytes()));
        let (dest, root) = checked_dest("destination", given, exports)?;
        match &first {
            Some((root0, given0)) if *root0 != root => {
                return bad(format!(
                    "destination {given:?} is in export root {root:?} but destination \
                     {given0:?} is in {root0:?}: one recover restores into one export root"
                ))
            }
            Some(_) => {}
            None => first = Some((root, given)),
        }
        let original = n.original_path.as_bytes();
        let start = original
            .iter()
            .position(|&b| b != b'/')
            .unwrap_or(original.len());
        let path = match &original[start..] {
            b"" => b".".to_vec(),
            p => p.to_vec(),
        };
        nlist.push((path.clone(), n.original_path.clone()));
        select.push(Selection {
            path,
            dest: Some(dest),
        });
    }
    let root = first.map(|(root, _)| root).unwrap_or_default();
    Ok(RecoverPlan {
        opts: opts(select, root),
        nlist,
    })
}

fn bad<T>(why: String) -> Result<T, Refusal> {
    refuse(NdmpError::ILLEGAL_ARGS_ERR, why)
}

/// `given` as a destination: absolute, without `..` or NUL, and inside an export root once
/// its deepest existing ancestor is resolved (symlinks followed). Returns it with that
/// ancestor resolved and the rest appended unchanged: names with nothing behind them, or a
/// dangling symlink, which the readers replace or fail on but never follow; and the
/// outermost export root holding it, so nested roots never split one restore. `what` names
/// it in a refusal.
fn checked_dest(
    what: &str,
    given: &Path,
    exports: &[PathBuf],
) -> Result<(PathBuf, PathBuf), Refusal> {
    if !given.is_absolute() {
        return bad(format!("{what} {given:?} is not an absolute path"));
    }
    if given.components().any(|c| c == Component::ParentDir) {
        return bad(format!("{what} {given:?} contains \"..\""));
    }
    if given.as_os_str().as_bytes().contains(&0) {
        return bad(format!("{what} {given:?} contains a NUL byte"));
    }
    let mut existing = given;
    let mut rest = Vec::new();
    let mut real = loop {
        match existing.canonicalize() {
            Ok(real) => break real,
            // an absolute path without ".." always reaches "/", which resolves
            Err(_) => match (existing.file_name(), existing.parent()) {
                (Some(name), Some(parent)) => {
                    rest.push(name);
                    existing = parent;
                }
                _ => return bad(format!("{what} {given:?} does not resolve")),
            },
        }
    };
    let root = exports
        .iter()
        .filter(|root| real.starts_with(root))
        .min_by_key(|root| root.as_os_str().len())
        .cloned();
    for name in rest.iter().rev() {
        real.push(name);
    }
    match root {
        Some(root) => Ok((real, root)),
        None if real == given => bad(format!(
            "{what} {given:?} is not inside an export root ({})",
            env::roots(exports)
        )),
        None => bad(format!(
            "{what} {given:?} is not inside an export root ({}): it resolves to {real:?}",
            env::roots(exports)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{dump, tar};
    use crate::wire::types::{Name, Pval};
    use std::os::unix::fs::symlink;
    use std::sync::atomic::AtomicBool;

    /// top/export (a root) holds a/b/file and symlinks; top/export2 is a second root;
    /// top/outside is outside every root.
    struct Tree {
        _dir: tempfile::TempDir,
        top: PathBuf,
        root: PathBuf,
        other: PathBuf,
        out: PathBuf,
    }

    impl Tree {
        fn new() -> Tree {
            let dir = tempfile::tempdir().unwrap();
            let top = dir.path().canonicalize().unwrap();
            let (root, other, out) = (top.join("export"), top.join("export2"), top.join("outside"));
            for d in [root.join("a/b"), other.clone(), out.join("d")] {
                std::fs::create_dir_all(d).unwrap();
            }
            std::fs::write(root.join("a/b/file"), b"x").unwrap();
            // out of the root at the first component below it, a middle one, the last one
            symlink(&out, root.join("esc")).unwrap();
            symlink(&out, root.join("a/esc")).unwrap();
            symlink(out.join("d"), root.join("a/b/esc")).unwrap();
            // elsewhere inside the root, and the root itself through a symlink above it
            symlink(root.join("a"), root.join("in")).unwrap();
            symlink(&root, top.join("alias")).unwrap();
            Tree {
                _dir: dir,
                top,
                root,
                other,
                out,
            }
        }

        fn exports(&self) -> Vec<PathBuf> {
            vec![self.root.clone(), self.other.clone()]
        }
    }

    /// `base` followed by `tail`, as bytes (`tail` need not be UTF-8).
    fn join(base: &Path, tail: &[u8]) -> Vec<u8> {
        [base.as_os_str().as_bytes(), tail].concat()
    }

    fn path(b: &[u8]) -> &Path {
        Path::new(OsStr::from_bytes(b))
    }

    fn name(original: &[u8], destination: &[u8]) -> Name {
        Name {
            original_path: original.into(),
            destination_path: destination.into(),
            name: "".into(),
            other_name: "".into(),
            node: 0,
            fh_info: u64::MAX,
        }
    }

    fn request(env: &[(&str, &[u8])], nlist: Vec<Name>) -> DataStartRecoverRequest {
        DataStartRecoverRequest {
            env: env
                .iter()
                .map(|(n, v)| Pval {
                    name: (*n).into(),
                    value: (*v).into(),
                })
                .collect(),
            nlist,
            butype_name: "dump".into(),
        }
    }

    /// An nlist of one entry, "/f" restored to `dest`.
    fn one(t: &Tree, dest: &[u8]) -> Result<RecoverPlan, Refusal> {
        recover_plan(&request(&[], vec![name(b"/f", dest)]), &t.exports())
    }

    /// A refusal with ILLEGAL_ARGS_ERR whose words contain each of `words`.
    fn refused(r: Result<RecoverPlan, Refusal>, words: &[&str]) {
        let e = r.unwrap_err();
        assert_eq!(e.error, NdmpError::ILLEGAL_ARGS_ERR, "{}", e.why);
        for w in words {
            assert!(e.why.contains(w), "{:?} lacks {w:?}", e.why);
        }
    }

    fn shown(p: &Path) -> String {
        format!("{p:?}")
    }

    #[test]
    fn nlist_destinations_outside_a_root_are_refused() {
        let t = Tree::new();
        let r = &t.root;
        let resolves = |p: &Path| format!("it resolves to {}", shown(p));
        let cases: Vec<(Vec<u8>, String, Option<String>)> = vec![
            (
                b"export/a/new".to_vec(),
                "is not an absolute path".into(),
                None,
            ),
            (b"".to_vec(), "is not an absolute path".into(), None),
            (
                join(&t.top, b"/../export/a/new"),
                "contains \"..\"".into(),
                None,
            ),
            (
                join(&t.top, b"/export/../export/a"),
                "contains \"..\"".into(),
                None,
            ),
            (join(r, b"/a/b/.."), "contains \"..\"".into(), None),
            (
                [b"/..", r.as_os_str().as_bytes()].concat(),
                "contains \"..\"".into(),
                None,
            ),
            (join(r, b"/a/x\0y"), "contains a NUL byte".into(), None),
            (
                join(&t.out, b"/new"),
                "is not inside an export root (".into(),
                None,
            ),
            (
                t.top.as_os_str().as_bytes().to_vec(),
                "is not inside an export root".into(),
                None,
            ),
            // a symlink inside the root that leads out of it, at each component
            (
                join(r, b"/esc/new/f"),
                "is not inside an export root".into(),
                Some(resolves(&t.out.join("new/f"))),
            ),
            (
                join(r, b"/a/esc/d/new"),
                "is not inside an export root".into(),
                Some(resolves(&t.out.join("d/new"))),
            ),
            (
                join(r, b"/a/b/esc/new"),
                "is not inside an export root".into(),
                Some(resolves(&t.out.join("d/new"))),
            ),
            (
                join(r, b"/a/b/esc"),
                "is not inside an export root".into(),
                Some(resolves(&t.out.join("d"))),
            ),
            (
                join(&t.out, b"/caf\xe9"),
                "is not inside an export root".into(),
                None,
            ),
        ];
        for (dest, why, resolved) in cases {
            let given = shown(path(&dest));
            let mut words = vec!["destination", given.as_str(), why.as_str()];
            words.extend(resolved.as_deref());
            refused(one(&t, &dest), &words);
        }
    }

    #[test]
    fn nlist_destinations_inside_a_root_are_resolved() {
        let t = Tree::new();
        let r = &t.root;
        let cases: Vec<(Vec<u8>, PathBuf, &PathBuf)> = vec![
            // an existing file, and names that do not exist yet below existing directories
            (join(r, b"/a/b/file"), r.join("a/b/file"), r),
            (join(r, b"/a/new"), r.join("a/new"), r),
            (join(r, b"/a/new/deeper/f"), r.join("a/new/deeper/f"), r),
            (join(r, b"/./a//new"), r.join("a/new"), r),
            (r.as_os_str().as_bytes().to_vec(), r.clone(), r),
            // symlinks that stay inside the root are resolved
            (join(r, b"/in/new"), r.join("a/new"), r),
            (join(r, b"/in"), r.join("a"), r),
            (join(&t.top, b"/alias/a/new"), r.join("a/new"), r),
            (join(&t.other, b"/x"), t.other.join("x"), &t.other),
        ];
        for (dest, want, root) in cases {
            let plan = one(&t, &dest).unwrap_or_else(|e| panic!("{:?}: {e}", path(&dest)));
            assert_eq!(plan.opts.dest_root, *root, "{:?}", path(&dest));
            assert_eq!(plan.opts.select.len(), 1);
            assert_eq!(plan.opts.select[0].path, b"f");
            assert_eq!(plan.opts.select[0].dest.as_ref(), Some(&want));
            assert_eq!(plan.nlist, vec![(b"f".to_vec(), NdmpString::from("/f"))]);
        }
    }

    #[test]
    fn an_nlist_restores_into_one_export_root() {
        let t = Tree::new();
        let (a, b) = (t.root.join("a/x"), t.other.join("y"));
        let two = |exports: &[PathBuf], a: &Path, b: &Path| {
            let nlist = vec![
                name(b"/x", a.as_os_str().as_bytes()),
                name(b"/y", b.as_os_str().as_bytes()),
            ];
            recover_plan(&request(&[], nlist), exports)
        };
        refused(
            two(&t.exports(), &a, &b),
            &[
                &shown(&a),
                &shown(&b),
                &shown(&t.root),
                &shown(&t.other),
                "one export root",
            ],
        );
        let plan = two(&t.exports(), &a, &t.root.join("a/b/z")).unwrap();
        assert_eq!(plan.opts.dest_root, t.root);
        // nested roots: the outermost one holds both, whichever order they are listed in
        let nested = vec![t.root.join("a"), t.root.clone()];
        let plan = two(&nested, &a, &t.root.join("z")).unwrap();
        assert_eq!(plan.opts.dest_root, t.root);
        let dests: Vec<_> = plan.opts.select.iter().map(|s| s.dest.clone()).collect();
        assert_eq!(dests, [Some(a), Some(t.root.join("z"))]);
    }

    #[test]
    fn without_an_nlist_prefix_or_filesystem_is_the_destination() {
        let t = Tree::new();
        let r = &t.root;
        let plan = |env: &[(&str, &[u8])]| recover_plan(&request(env, Vec::new()), &t.exports());
        let bytes = |p: &Path| p.as_os_str().as_bytes().to_vec();
        // an environment (name, value bytes), and the destination it gives
        type Env = Vec<(&'static str, Vec<u8>)>;
        let accepted: Vec<(Env, PathBuf)> = vec![
            (vec![("PREFIX", bytes(&r.join("a")))], r.join("a")),
            (vec![("prefix", bytes(&r.join("a/new")))], r.join("a/new")),
            (vec![("PREFIX", bytes(&r.join("in/new")))], r.join("a/new")),
            (vec![("FILESYSTEM", bytes(&t.other))], t.other.clone()),
            // PREFIX wins over FILESYSTEM, also when it is not UTF-8
            (
                vec![("FILESYSTEM", bytes(&t.other)), ("PREFIX", bytes(r))],
                r.clone(),
            ),
            (
                vec![
                    ("FILESYSTEM", bytes(&t.other)),
                    ("PREFIX", join(r, b"/caf\xe9")),
                ],
                r.join(OsStr::from_bytes(b"caf\xe9")),
            ),
        ];
        for (env, want) in accepted {
            let env: Vec<(&str, &[u8])> = env.iter().map(|(n, v)| (*n, v.as_slice())).collect();
            let p = plan(&env).unwrap_or_else(|e| panic!("{env:?}: {e}"));
            assert_eq!(p.opts.dest_root, want, "{env:?}");
            assert!(p.opts.select.is_empty() && p.nlist.is_empty());
        }
        let refusals: Vec<(&str, Vec<u8>, &str)> = vec![
            ("PREFIX", bytes(&t.out), "is not inside an export root"),
            ("PREFIX", join(r, b"/esc/new"), "it resolves to"),
            ("PREFIX", b"export/a".to_vec(), "is not an absolute path"),
            ("PREFIX", join(r, b"/a/../.."), "contains \"..\""),
            ("PREFIX", join(r, b"/a/b/file"), "is not a directory"),
            (
                "FILESYSTEM",
                bytes(&t.out.join("d")),
                "is not inside an export root",
            ),
        ];
        for (var, value, why) in refusals {
            let given = format!("{var} {}", shown(path(&value)));
            refused(plan(&[(var, &value)]), &[&given, why]);
        }
        refused(
            plan(&[("FORCE", b"y")]),
            &["no nlist and no PREFIX or FILESYSTEM"],
        );
    }

    #[test]
    fn force_y_replaces_existing_files_and_anything_else_keeps_them() {
        let t = Tree::new();
        let prefix = t.root.as_os_str().as_bytes();
        let dest = join(&t.root, b"/a/new");
        for (force, keep) in [
            (None, true),
            (Some(&b"Y"[..]), false),
            (Some(b"yes"), false),
            (Some(b"true"), false),
            (Some(b"N"), true),
            (Some(b"maybe"), true),
        ] {
            let mut env = vec![("PREFIX", prefix)];
            env.extend(force.map(|f| ("FORCE", f)));
            let whole = recover_plan(&request(&env, Vec::new()), &t.exports()).unwrap();
            let some = recover_plan(&request(&env, vec![name(b"/f", &dest)]), &t.exports());
            assert_eq!(whole.opts.keep_existing, keep, "{force:?}");
            assert_eq!(some.unwrap().opts.keep_existing, keep, "{force:?}");
            assert!(whole.opts.restore_owner);
        }
    }

    /// Names are bytes: neither a non-UTF-8 byte nor a control character is escaped on its
    /// way from the nlist to the reader's selection, its destination and LOG_FILE's name.
    #[test]
    fn nlist_names_travel_as_bytes() {
        let t = Tree::new();
        let r = &t.root;
        let cases: [(&[u8], &[u8], &[u8]); 5] = [
            (b"/caf\xe9", b"/a/caf\xe9", b"caf\xe9"),
            (b"/sub/x\ty\n", b"/a/x\ty\n", b"sub/x\ty\n"),
            (b"//d\xff/e", b"/a/\xff", b"d\xff/e"),
            (b"/", b"/a", b"."),
            (b"", b"/a", b"."),
        ];
        for (original, dest, image_path) in cases {
            let dest = join(r, dest);
            let nlist = vec![name(original, &dest)];
            let plan = recover_plan(&request(&[], nlist), &t.exports()).unwrap();
            let sel = &plan.opts.select[0];
            assert_eq!(sel.path, image_path);
            assert_eq!(sel.dest.as_deref(), Some(path(&dest)));
            assert_eq!(plan.nlist, vec![(image_path.to_vec(), original.into())]);
        }
    }

    /// The plan of a non-UTF-8 nlist restores those very names from a dump and a tar image,
    /// and the reader reports each under the path the plan matches it by.
    #[test]
    fn non_utf8_names_are_restored_from_both_formats() {
        let t = Tree::new();
        let src = t.top.join("src");
        let dir = src.join(OsStr::from_bytes(b"d\xff"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(src.join(OsStr::from_bytes(b"caf\xe9")), b"one").unwrap();
        std::fs::write(dir.join(OsStr::from_bytes(b"x\ty")), b"two").unwrap();
        let abort = AtomicBool::new(false);
        let mut dump_image = Vec::new();
        dump::write_dump(
            &src,
            &dump::DumpOptions::default(),
            &mut dump_image,
            &mut |_| {},
            &abort,
        )
        .unwrap();
        let mut tar_image = Vec::new();
        tar::write_tar(
            &src,
            &tar::TarOptions::default(),
            &mut tar_image,
            &mut |_| {},
            &abort,
        )
        .unwrap();
        for (format, image) in [("dump", &dump_image), ("tar", &tar_image)] {
            let to = join(&t.root, format!("/{format}").as_bytes());
            let nlist = vec![
                name(b"/caf\xe9", &[to.as_slice(), b"/caf\xe9"].concat()),
                name(b"/d\xff", &[to.as_slice(), b"/\xfe"].concat()),
            ];
            let plan = recover_plan(&request(&[], nlist), &t.exports()).unwrap();
            let mut restored = Vec::new();
            let mut events = |e| {
                if let crate::format::recover::Event::Restored { path, ok: true, .. } = e {
                    restored.push(path);
                }
            };
            let input = &mut image.as_slice();
            match format {
                "dump" => dump::reader::read_dump(input, &plan.opts, &mut events, &abort),
                _ => tar::read_tar(input, &plan.opts, &mut events, &abort),
            }
            .unwrap();
            let to = path(&to);
            let file = to.join(OsStr::from_bytes(b"caf\xe9"));
            let moved = to.join(OsStr::from_bytes(b"\xfe/x\ty"));
            assert_eq!(std::fs::read(file).unwrap(), b"one", "{format}");
            assert_eq!(std::fs::read(moved).unwrap(), b"two", "{format}");
            for (image_path, _) in &plan.nlist {
                assert!(restored.contains(image_path), "{format}: {restored:?}");
            }
        }
    }
}
