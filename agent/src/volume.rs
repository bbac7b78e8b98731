//! Where the kubelet mounts a pod's volume: `<root>/pods/<uid>/volumes/<plugin>/<name>`
//! (`.../kubernetes.io~csi/<name>/mount` for CSI volumes). The root is the kubelet's
//! `--root-dir`, `/var/lib/kubelet` unless configured otherwise.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The default kubelet root directory.
pub const DEFAULT_KUBELET_ROOT: &str = "/var/lib/kubelet";

/// A name that is one path component and nothing else (no `/`, `.`, `..`, NUL).
fn is_component(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

/// The directory of volume `volume` (the pod's volume name, or for a persistent volume the
/// PersistentVolume's name, which is what the kubelet names the directory after) of the pod
/// with `uid`. Fails when there is none, or more than one.
pub fn volume_dir(kubelet_root: &Path, uid: &str, pod: &str, volume: &str) -> Result<PathBuf> {
    if !is_component(uid) || !is_component(volume) {
        return Err(Error::Invalid(format!(
            "pod UID {uid:?} and volume {volume:?} must be plain names"
        )));
    }
    let volumes = kubelet_root.join("pods").join(uid).join("volumes");
    let not_found = || Error::VolumeNotFound {
        pod: pod.to_owned(),
        volume: volume.to_owned(),
        dir: volumes.clone(),
    };
    let plugins = match std::fs::read_dir(&volumes) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_found()),
        Err(e) => return Err(Error::read(&volumes)(e)),
    };
    let mut found = Vec::new();
    for plugin in plugins {
        let plugin = plugin.map_err(Error::read(&volumes))?;
        let candidate = plugin.path().join(volume);
        if !candidate.is_dir() {
            continue;
        }
        let csi = plugin
            .file_name()
            .to_str()
            .is_some_and(|n| n.ends_with("~csi"));
        found.push(if csi {
            candidate.join("mount")
        } else {
            candidate
        });
    }
    match found.len() {
        0 => Err(not_found()),
        1 => Ok(found.remove(0)),
        _ => Err(Error::Invalid(format!(
            "volume {volume:?} of pod {pod} is ambiguous: {}",
            found
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "0b7e-uid";

    #[test]
    fn finds_an_empty_dir_and_a_csi_volume() {
        let root = tempfile::tempdir().unwrap();
        let vols = root.path().join("pods").join(UID).join("volumes");
        std::fs::create_dir_all(vols.join("kubernetes.io~empty-dir/data")).unwrap();
        std::fs::create_dir_all(vols.join("kubernetes.io~csi/pvc-123/mount")).unwrap();
        assert_eq!(
            volume_dir(root.path(), UID, "ns/p", "data").unwrap(),
            vols.join("kubernetes.io~empty-dir/data")
        );
        assert_eq!(
            volume_dir(root.path(), UID, "ns/p", "pvc-123").unwrap(),
            vols.join("kubernetes.io~csi/pvc-123/mount")
        );
    }

    #[test]
    fn missing_ambiguous_and_unsafe_names_are_errors() {
        let root = tempfile::tempdir().unwrap();
        let err = volume_dir(root.path(), UID, "ns/p", "data").unwrap_err();
        assert_eq!(err.category(), "volume_not_found");
        assert!(err.to_string().contains("ns/p"), "{err}");
        let vols = root.path().join("pods").join(UID).join("volumes");
        std::fs::create_dir_all(vols.join("a/data")).unwrap();
        std::fs::create_dir_all(vols.join("b/data")).unwrap();
        assert!(
            volume_dir(root.path(), UID, "ns/p", "data")
                .unwrap_err()
                .to_string()
                .contains("ambiguous")
        );
        for (uid, volume) in [("..", "data"), (UID, ".."), (UID, "a/b"), ("", "x")] {
            assert_eq!(
                volume_dir(root.path(), uid, "ns/p", volume)
                    .unwrap_err()
                    .category(),
                "invalid"
            );
        }
    }
}
