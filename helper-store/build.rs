include!("../proto/src/seccomp_build.rs");

fn main() {
    compile_seccomp("seccomp.json");
    compile_seccomp("rsync-seccomp.json");
}
