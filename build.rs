//! Embeds the operator console (`console/`) in the binary: writes `console_assets.rs` into
//! `OUT_DIR`, a table of every served file's path, content type and bytes (`include_bytes!`),
//! so `ewall serve` needs no files beside it. The console's own notes (`README.md`) and the
//! vendoring script are not served; the reference boundaries of `fixtures/zones/` are, under
//! `boundaries/`, for the map without tiles.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let console = root.join("console");
    println!("cargo:rerun-if-changed=console");
    let boundaries = root.join("fixtures/zones");
    println!("cargo:rerun-if-changed=fixtures/zones");
    let mut files = Vec::new();
    collect(&console, &console, &mut files);
    // The reference boundaries the map draws when no tiles are configured.
    let mut reference = Vec::new();
    collect(&boundaries, &boundaries, &mut reference);
    files.extend(
        reference
            .into_iter()
            .filter(|(name, _)| name.ends_with(".geojson"))
            .map(|(name, path)| (format!("boundaries/{name}"), path)),
    );
    files.sort();
    let mut out = String::from("&[\n");
    for (relative, absolute) in &files {
        println!("cargo:rerun-if-changed={}", absolute.display());
        writeln!(
            out,
            "    ({relative:?}, {:?}, include_bytes!({:?})),",
            content_type(relative),
            absolute.display().to_string()
        )
        .expect("writing to a String cannot fail");
    }
    out.push(']');
    let target =
        PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("console_assets.rs");
    std::fs::write(target, out).expect("OUT_DIR is writable");
}

fn collect(base: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect(base, &path, files);
            continue;
        }
        let relative = path
            .strip_prefix(base)
            .expect("walked from base")
            .to_string_lossy()
            .replace('\\', "/");
        if relative == "README.md" || relative.ends_with(".sh") || relative.starts_with('.') {
            continue;
        }
        files.push((relative, path));
    }
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") | Some("mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") | Some("geojson") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("wav") => "audio/wav",
        Some("txt") | Some("md") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}
