//! Pod mount hints, the annotations runsc reads so Kubernetes pod volumes can be
//! shared between the containers of one sandbox:
//! `dev.gvisor.spec.mount.NAME.source|type|share|options`.

use crate::error::SetupError;
use std::collections::BTreeMap;

const PREFIX: &str = "dev.gvisor.spec.mount.";

/// What backs a hinted volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HintType {
    /// A host directory through the gofer.
    Bind,
    /// An in-sandbox tmpfs.
    Tmpfs,
}

/// Who shares a hinted volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Share {
    /// One container only.
    Container,
    /// The containers of the pod.
    Pod,
    /// The pod and the host (revalidated: shared file access).
    Shared,
}

/// One volume hint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hint {
    /// Volume name.
    pub name: String,
    /// Source the container mounts name.
    pub source: String,
    /// What backs it.
    pub typ: HintType,
    /// Who shares it.
    pub share: Share,
    /// Mount options of the master.
    pub options: Vec<String>,
}

impl Hint {
    /// Whether the master is read-only.
    pub fn readonly(&self) -> bool {
        self.options.iter().any(|o| o == "ro")
    }
}

/// Parse the hints among `annotations`. A hint missing a field (or with an invalid
/// one) is dropped with a warning; two hints naming one source are an error.
pub fn parse(annotations: &BTreeMap<String, String>) -> Result<(Vec<Hint>, Vec<String>), SetupError> {
    let mut fields: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut warnings = Vec::new();
    for (k, v) in annotations {
        let Some(rest) = k.strip_prefix(PREFIX) else { continue };
        match rest.rsplit_once('.') {
            Some((name, field)) if !name.is_empty() => {
                fields.entry(name.to_string()).or_default().insert(field.to_string(), v.clone());
            }
            _ => warnings.push(format!("annotation {k:?}: not a mount hint, ignored")),
        }
    }
    let mut hints: Vec<Hint> = Vec::new();
    for (name, f) in fields {
        let get = |field: &str| f.get(field).cloned();
        let (Some(source), Some(typ), Some(share)) = (get("source"), get("type"), get("share")) else {
            warnings.push(format!("mount hint {name:?}: needs source, type and share; dropped"));
            continue;
        };
        let typ = match typ.as_str() {
            "bind" => HintType::Bind,
            "tmpfs" => HintType::Tmpfs,
            t => {
                warnings.push(format!("mount hint {name:?}: unknown type {t:?}; dropped"));
                continue;
            }
        };
        let share = match share.as_str() {
            "container" => Share::Container,
            "pod" => Share::Pod,
            "shared" => Share::Shared,
            s => {
                warnings.push(format!("mount hint {name:?}: unknown share {s:?}; dropped"));
                continue;
            }
        };
        let options: Vec<String> = get("options")
            .map(|o| o.split(',').filter(|x| !x.is_empty()).map(String::from).collect())
            .unwrap_or_default();
        if let Some(other) = hints.iter().find(|h| h.source == source) {
            return Err(SetupError::field(
                format!("annotations[{PREFIX}{name}.source]"),
                source,
                format!("also the source of mount hint {:?}", other.name),
            ));
        }
        for field in f.keys() {
            if !["source", "type", "share", "options"].contains(&field.as_str()) {
                warnings.push(format!("mount hint {name:?}: unknown field {field:?} ignored"));
            }
        }
        hints.push(Hint { name, source, typ, share, options });
    }
    Ok((hints, warnings))
}
