// Shared by the build scripts of silod and each helper (pulled in with `include!`), so the
// reviewed `seccomp.json` beside each crate is compiled to BPF at build time and embedded:
// nothing is loaded from disk at run time, so no file on the host can loosen a filter.
//
// Rules enforced here, so a review can rely on them:
// - one filter named "main", whose default (mismatch) action is "kill_process";
// - every rule carries a "comment" saying why the syscall is needed.

#[allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]
fn compile_seccomp(json_path: &str) {
    use std::io::Write;
    println!("cargo:rerun-if-changed={json_path}");
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let text = std::fs::read_to_string(json_path)
        .unwrap_or_else(|e| panic!("reading {json_path}: {e}"));
    let mut doc: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{json_path}: {e}"));
    let main = doc
        .get_mut("main")
        .unwrap_or_else(|| panic!("{json_path}: no filter named \"main\""));
    assert_eq!(
        main.get("mismatch_action").and_then(|v| v.as_str()),
        Some("kill_process"),
        "{json_path}: the main filter must kill the process on a mismatch"
    );
    let rules = main
        .get("filter")
        .and_then(|f| f.as_array())
        .unwrap_or_else(|| panic!("{json_path}: main.filter must be a list"));
    let mut seen = std::collections::BTreeSet::new();
    for r in rules {
        let name = r.get("syscall").and_then(|s| s.as_str()).unwrap_or("?");
        let comment = r.get("comment").and_then(|c| c.as_str()).unwrap_or("");
        assert!(
            comment.trim().len() >= 8,
            "{json_path}: rule for {name} needs a comment saying why it is allowed"
        );
        if r.get("args").is_none() {
            assert!(
                seen.insert(name.to_string()),
                "{json_path}: {name} is listed twice without arguments"
            );
        }
    }
    let arch_name = std::env::var("CARGO_CFG_TARGET_ARCH").expect("target arch");
    let arch: seccompiler::TargetArch = arch_name
        .as_str()
        .try_into()
        .unwrap_or_else(|e| panic!("seccompiler does not support {arch_name}: {e:?}"));
    let write = |variant: &serde_json::Value, file: &str| {
        let bytes = serde_json::to_vec(variant).expect("json");
        let map = seccompiler::compile_from_json(bytes.as_slice(), arch)
            .unwrap_or_else(|e| panic!("{json_path}: {e}"));
        let prog = map.get("main").expect("main filter");
        let mut f = std::fs::File::create(out_dir.join(file)).expect("create bpf");
        for ins in prog {
            f.write_all(&ins.code.to_le_bytes()).expect("write");
            f.write_all(&[ins.jt, ins.jf]).expect("write");
            f.write_all(&ins.k.to_le_bytes()).expect("write");
        }
    };
    // seccomp.json gives seccomp.bpf and seccomp_log.bpf; another file its own stem's.
    let stem = std::path::Path::new(json_path)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("seccomp")
        .to_string();
    let enforce = doc.clone();
    write(&enforce, &format!("{stem}.bpf"));
    let mut log = doc.clone();
    log["main"]["mismatch_action"] = serde_json::Value::String("log".into());
    write(&log, &format!("{stem}_log.bpf"));
    doc["main"]["mismatch_action"] = serde_json::Value::String("kill_process".into());
}
