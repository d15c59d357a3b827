//! The project's images as local programs (see `pgdr_minicluster::image`).

use std::path::Path;

use pgdr_minicluster::{Image, ImageMap};

use crate::options::workspace;

/// The fsGroup OpenShift's restricted-v2 SCC gives pods that set none: the first id of the
/// namespace's `openshift.io/sa.scc.supplemental-groups` range (a typical one here).
pub const RESTRICTED_V2_FS_GROUP: i64 = 1_000_680_000;

/// The project's images, mapped to this workspace's build and the located tools:
/// `pgdr-port-patch`, `pgdr-failover`, `pgdr-readiness` → `<target_dir>/<name>`;
/// `pgdr-patroni` → the image's real entrypoint (`docker/patroni/entrypoint.sh`, which then execs
/// the venv's `patroni`) as the unprivileged user, with the image's PostgreSQL bin dir
/// (`pg_bin_in_image`, the chart's `postgresql.binDir`) mapped to the local one.
pub fn project(
    target_dir: &Path,
    tools: &pgdr_patroni_harness::Tools,
    pg_bin_in_image: &str,
) -> ImageMap {
    let mut map = ImageMap::new();
    for bin in ["pgdr-port-patch", "pgdr-failover", "pgdr-readiness"] {
        map.add(Image::program(bin, target_dir.join(bin)));
    }
    map.add(
        Image::program(
            "pgdr-patroni",
            workspace().join("docker/patroni/entrypoint.sh"),
        )
        .with_run_as(tools.run_as.clone())
        .with_path(pg_bin_in_image, &tools.pg_bin)
        .with_path_dir(&tools.pg_bin)
        // Where the entrypoint finds `patroni`.
        .with_path_dir(tools.patroni.parent().unwrap_or(Path::new("/")))
        .with_env("LC_ALL", "C.UTF-8"),
    );
    map
}
