//! The operator console: the static files of `console/` (HTML, JavaScript modules, CSS, the
//! vendored Leaflet and the reference boundaries), embedded in the binary at build time by
//! `build.rs` and served at `/console/`, with `/` redirecting there.
//!
//! The files are public and hold no data: everything the console shows it reads from the
//! authenticated API with the operator's token. Every console response carries a strict
//! Content-Security-Policy (scripts and styles from this origin only, no inline script or style,
//! network access to this origin only, images from this origin and the configured tile server),
//! so an injected string cannot run or send anything anywhere.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};

use crate::http::problem::Problem;

/// Every embedded file: path under `console/`, content type, bytes.
static ASSETS: &[(&str, &str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/console_assets.rs"));

/// The projection the base map's tiles are drawn in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TileCrs {
    /// WGS-84, as positions are stored (OpenStreetMap and most providers outside China).
    #[default]
    Wgs84,
    /// GCJ-02, the offset datum of maps published in China (Amap, Tencent): the console shifts
    /// positions and zones to it for display.
    Gcj02,
}

/// The `[console]` section: what the operator console's map draws on.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// XYZ tile URL template (`https://tiles.example/{z}/{x}/{y}.png`); without it the map
    /// draws zones and reference boundaries on a plain background.
    pub tile_url: Option<String>,
    /// Projection of those tiles.
    pub tile_crs: TileCrs,
}

impl ConsoleConfig {
    /// Checks the tile URL; an error names the key and the problem.
    ///
    /// # Errors
    /// `(key, problem)` for a tile URL that is not an absolute http(s) template with `{z}`,
    /// `{x}` and `{y}`.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let Some(url) = &self.tile_url else {
            return Ok(());
        };
        if self.tile_origin().is_none() {
            return Err((
                "tile_url",
                format!("{url:?} must be an absolute http:// or https:// URL"),
            ));
        }
        for part in ["{z}", "{x}", "{y}"] {
            if !url.contains(part) {
                return Err(("tile_url", format!("{url:?} has no {part} placeholder")));
            }
        }
        if url
            .chars()
            .any(|c| c.is_whitespace() || c == ';' || c == '\'')
        {
            return Err((
                "tile_url",
                format!("{url:?} may not contain spaces, quotes or semicolons"),
            ));
        }
        Ok(())
    }

    /// `scheme://host[:port]` of the tile URL (for the Content-Security-Policy), with any
    /// `{s}` subdomain placeholder widened to a wildcard.
    pub fn tile_origin(&self) -> Option<String> {
        let url = self.tile_url.as_deref()?;
        let (scheme, rest) = url.split_once("://")?;
        if scheme != "http" && scheme != "https" {
            return None;
        }
        let authority = rest.split(['/', '?', '#']).next()?;
        if authority.is_empty() || authority.contains('@') {
            return None;
        }
        let authority = authority.replace("{s}", "*");
        if authority.contains(['{', '}']) {
            return None;
        }
        Some(format!("{scheme}://{authority}"))
    }

    /// The Content-Security-Policy of every console response.
    pub fn content_security_policy(&self) -> String {
        let tiles = self
            .tile_origin()
            .map(|origin| format!(" {origin}"))
            .unwrap_or_default();
        format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:{tiles}; \
             connect-src 'self'; media-src 'self' data:; font-src 'self'; manifest-src 'self'; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'; object-src 'none'"
        )
    }
}

/// The embedded file at `path` (relative to `console/`), with its content type.
pub fn asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    ASSETS
        .iter()
        .find(|(name, _, _)| *name == path)
        .map(|(_, kind, bytes)| (*kind, *bytes))
}

/// Paths of every embedded file.
pub fn asset_paths() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|(name, _, _)| *name)
}

/// `/` (redirect), `/console` (redirect) and `/console/...` (the files).
pub fn router<S: Clone + Send + Sync + 'static>(config: &ConsoleConfig) -> Router<S> {
    let policy = HeaderValue::from_str(&config.content_security_policy())
        // validate() refused every character a header value cannot hold.
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"));
    let index_policy = policy.clone();
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route(
            "/console/",
            get(move || {
                let policy = index_policy.clone();
                async move { serve("index.html", policy) }
            }),
        )
        .route(
            "/console/{*path}",
            get(move |Path(path): Path<String>| {
                let policy = policy.clone();
                async move { serve(&path, policy) }
            }),
        )
}

fn serve(path: &str, policy: HeaderValue) -> Response {
    let Some((kind, bytes)) = asset(path) else {
        return Problem::new(
            StatusCode::NOT_FOUND,
            format!("the console has no file {path:?}"),
        )
        .into_response();
    };
    // The HTML always revalidates so a new build's page is picked up; the rest may be cached
    // briefly (the file names do not change between builds).
    let cache = if kind.starts_with("text/html") {
        "no-cache"
    } else {
        "public, max-age=300"
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
            (header::CONTENT_SECURITY_POLICY, policy),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        bytes,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_scripts_styles_and_map_library_are_embedded() {
        for path in [
            "index.html",
            "app.js",
            "console.css",
            "vendor/leaflet/leaflet.js",
            "vendor/leaflet/LICENSE",
            "boundaries/jiahe-county-431024.gcj02.geojson",
        ] {
            assert!(asset(path).is_some(), "{path} is not embedded");
        }
        assert!(asset("README.md").is_none());
        assert!(asset("vendor/update.sh").is_none());
    }

    #[test]
    fn the_policy_allows_no_inline_code_and_only_the_tile_origin() {
        let plain = ConsoleConfig::default().content_security_policy();
        assert!(plain.contains("script-src 'self';"));
        assert!(!plain.contains("unsafe"));
        assert!(plain.contains("img-src 'self' data:;"));
        let tiles = ConsoleConfig {
            tile_url: Some("https://{s}.tiles.example:8443/{z}/{x}/{y}.png".into()),
            tile_crs: TileCrs::Gcj02,
        };
        assert_eq!(tiles.validate(), Ok(()));
        assert!(tiles
            .content_security_policy()
            .contains("img-src 'self' data: https://*.tiles.example:8443;"));
    }

    #[test]
    fn a_tile_url_that_is_not_an_xyz_template_is_refused() {
        for bad in [
            "tiles.example/{z}/{x}/{y}.png",
            "ftp://tiles.example/{z}/{x}/{y}.png",
            "https://tiles.example/{z}/{x}.png",
            "https://tiles.example/{z}/{x}/{y}.png; script-src *",
            "https://user@tiles.example/{z}/{x}/{y}.png",
        ] {
            let config = ConsoleConfig {
                tile_url: Some(bad.into()),
                tile_crs: TileCrs::Wgs84,
            };
            assert_eq!(
                config.validate().map_err(|(k, _)| k),
                Err("tile_url"),
                "{bad}"
            );
        }
    }

    /// The keys of a message catalogue (`  "key": "text",` lines).
    fn catalogue_keys(path: &str) -> std::collections::BTreeSet<String> {
        let (_, bytes) = asset(path).expect("embedded");
        std::str::from_utf8(bytes)
            .unwrap()
            .lines()
            .filter_map(|line| line.trim().strip_prefix('"')?.split_once("\":"))
            .map(|(key, _)| key.to_owned())
            .collect()
    }

    #[test]
    fn both_languages_have_every_text_the_page_names() {
        let en = catalogue_keys("messages/en.js");
        let zh = catalogue_keys("messages/zh-CN.js");
        assert!(en.len() > 100, "{} keys read", en.len());
        assert_eq!(en, zh, "the catalogues hold the same keys");
        let (_, page) = asset("index.html").unwrap();
        let page = std::str::from_utf8(page).unwrap();
        for attribute in ["data-i18n=\"", "data-i18n-placeholder=\""] {
            for part in page.split(attribute).skip(1) {
                let key = part.split('"').next().unwrap();
                assert!(en.contains(key), "{key} has no text");
            }
        }
    }
}
