//! Links roamlab as a position-dependent executable. Every agent and verb is a new process
//! of this one large binary, and a position-independent one spends ~0.2 ms of each start
//! (a tenth of it, here) fixing up its relocations, page by page: a single attach starts
//! two such processes one after the other. The libraries stay position-independent code,
//! which links into either kind.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
