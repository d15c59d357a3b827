//! Image → local program mapping: what "pulling and running an image" means in the drill.

use std::path::{Path, PathBuf};

use pgdr_patroni_harness::RunAs;

/// How one image runs here.
#[derive(Debug, Clone)]
pub struct Image {
    /// Matches an image reference whose repository name (last path part, without tag or digest)
    /// equals it, or whose full reference starts with it.
    pub name: String,
    /// The image's ENTRYPOINT as local programs; replaced by the container's `command`.
    pub entrypoint: Vec<String>,
    /// The image's CMD; replaced by the container's `args`.
    pub cmd: Vec<String>,
    /// Run as this (unprivileged) user instead of the drill's own user.
    pub run_as: Option<RunAs>,
    /// Files of the image: (path in the image, local path), e.g. the PostgreSQL bin dir.
    pub paths: Vec<(String, PathBuf)>,
    /// Folders prepended to PATH (where bare command names are looked up).
    pub path_dirs: Vec<PathBuf>,
    /// Extra environment the image sets (ENV lines).
    pub env: Vec<(String, String)>,
}

impl Image {
    /// An image whose entrypoint is one local program.
    pub fn program(name: impl Into<String>, program: impl AsRef<Path>) -> Self {
        Image {
            name: name.into(),
            entrypoint: vec![program.as_ref().to_string_lossy().into_owned()],
            cmd: Vec::new(),
            run_as: None,
            paths: Vec::new(),
            path_dirs: Vec::new(),
            env: Vec::new(),
        }
    }

    pub fn with_cmd(mut self, cmd: &[&str]) -> Self {
        self.cmd = cmd.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn with_run_as(mut self, run_as: RunAs) -> Self {
        self.run_as = Some(run_as);
        self
    }

    pub fn with_path(mut self, inside: &str, local: impl Into<PathBuf>) -> Self {
        self.paths.push((inside.to_string(), local.into()));
        self
    }

    pub fn with_path_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.path_dirs.push(dir.into());
        self
    }

    pub fn with_env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    fn score(&self, image: &str) -> Option<usize> {
        let repo = image.rsplit('/').next().unwrap_or(image);
        let repo = repo.split(['@', ':']).next().unwrap_or(repo);
        if repo == self.name || image.starts_with(&self.name) {
            Some(self.name.len())
        } else {
            None
        }
    }
}

/// The images a site can run; the most specific match wins.
#[derive(Debug, Clone, Default)]
pub struct ImageMap {
    images: Vec<Image>,
}

impl ImageMap {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, image: Image) -> Self {
        self.images.push(image);
        self
    }

    pub fn add(&mut self, image: Image) {
        self.images.push(image);
    }

    pub fn resolve(&self, image: &str) -> Option<&Image> {
        self.images
            .iter()
            .filter_map(|i| i.score(image).map(|s| (s, i)))
            .max_by_key(|(s, _)| *s)
            .map(|(_, i)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_by_repository_name_or_prefix() {
        let map = ImageMap::new()
            .with(Image::program("pgdr-patroni", "/p"))
            .with(Image::program("pgdr-port-patch", "/pp"))
            .with(Image::program("python", "/py"));
        let e = |i: &str| map.resolve(i).map(|i| i.entrypoint[0].clone());
        assert_eq!(e("ghcr.io/bcgov/pgdr-patroni:0.1.0").as_deref(), Some("/p"));
        assert_eq!(e("pgdr-port-patch@sha256:ab").as_deref(), Some("/pp"));
        assert_eq!(e("python:3.12").as_deref(), Some("/py"));
        assert_eq!(e("ghcr.io/bcgov/other"), None);
    }
}
