include!("../proto/src/seccomp_build.rs");

fn main() {
    compile_seccomp("seccomp.json");
    compile_seccomp("forwarder-seccomp.json");
}
