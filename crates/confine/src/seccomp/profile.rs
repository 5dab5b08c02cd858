//! Reading a `linux.seccomp` JSON object into checked values, each error naming its
//! field.

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp};
use serde_json::{Map, Value};

use super::SeccompError;

/// The errno of ERRNO (and message of TRACE) when the profile gives none.
const DEFAULT_ERRNO: u32 = libc::EPERM as u32;

/// A profile whose every name has been checked, ready for libseccomp.
pub(super) struct Profile {
    /// Where the profile sits in the spec (`linux.seccomp`).
    pub field: String,
    /// `defaultAction` (with `defaultErrnoRet`).
    pub default_action: ScmpAction,
    /// The field of the default action.
    pub default_field: String,
    /// `architectures`, each with its field.
    pub arches: Vec<(ScmpArch, String)>,
    /// `flags` as `SECCOMP_FILTER_FLAG_*` bits, each with its field.
    pub flags: Vec<(libc::c_ulong, String)>,
    /// `syscalls`.
    pub rules: Vec<Rule>,
}

/// One entry of `syscalls`.
pub(super) struct Rule {
    /// `linux.seccomp.syscalls[i]`.
    pub field: String,
    /// `names`, not yet resolved (unknown ones are skipped with a warning).
    pub names: Vec<String>,
    /// `action` with `errnoRet`.
    pub action: ScmpAction,
    /// `args`, all to match.
    pub args: Vec<ScmpArgCompare>,
    /// Some argument is compared twice: libseccomp cannot AND those, so each
    /// comparison becomes a rule of its own.
    pub alternatives: bool,
}

impl Profile {
    /// Reads the `linux.seccomp` object found at `field`.
    pub fn from_json(value: &Value, field: &str, warnings: &mut Vec<String>) -> Result<Self, SeccompError> {
        let map = object(value, field)?;
        let default_field = format!("{field}.defaultAction");
        let default_errno = errno(map, "defaultErrnoRet", field)?;
        let default_action =
            action(required_str(map, "defaultAction", field)?, default_errno, &default_field)?;

        let mut arches = Vec::new();
        for (i, v) in optional_array(map, "architectures", field)?.iter().enumerate() {
            let f = format!("{field}.architectures[{i}]");
            arches.push((arch(string(v, &f)?, &f)?, f));
        }

        let mut flags = Vec::new();
        for (i, v) in optional_array(map, "flags", field)?.iter().enumerate() {
            let f = format!("{field}.flags[{i}]");
            let bit = match string(v, &f)? {
                "SECCOMP_FILTER_FLAG_TSYNC" => libc::SECCOMP_FILTER_FLAG_TSYNC,
                "SECCOMP_FILTER_FLAG_LOG" => libc::SECCOMP_FILTER_FLAG_LOG,
                "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
                "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" => {
                    warnings.push(format!(
                        "{f}: SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV ignored: it only applies to a \
                         notify listener, and sandfs has none"
                    ));
                    continue;
                }
                other => return Err(bad(&f, format!("unknown seccomp flag {other:?}"))),
            };
            flags.push((bit, f));
        }

        let mut rules = Vec::new();
        for (i, v) in optional_array(map, "syscalls", field)?.iter().enumerate() {
            let f = format!("{field}.syscalls[{i}]");
            rules.push(Rule::from_json(v, f, warnings)?);
        }

        Ok(Self { field: field.to_owned(), default_action, default_field, arches, flags, rules })
    }
}

impl Rule {
    fn from_json(value: &Value, field: String, warnings: &mut Vec<String>) -> Result<Self, SeccompError> {
        let map = object(value, &field)?;
        let names_field = format!("{field}.names");
        let names = match map.get("names") {
            Some(Value::Array(names)) => names
                .iter()
                .enumerate()
                .map(|(i, n)| string(n, &format!("{names_field}[{i}]")).map(str::to_owned))
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => return Err(bad(&names_field, "not an array of strings".into())),
            None => return Err(bad(&names_field, "missing".into())),
        };
        let action = action(
            required_str(map, "action", &field)?,
            errno(map, "errnoRet", &field)?,
            &format!("{field}.action"),
        )?;

        let mut args = Vec::new();
        let mut seen = [false; 6];
        let mut alternatives = false;
        for (i, v) in optional_array(map, "args", &field)?.iter().enumerate() {
            let f = format!("{field}.args[{i}]");
            let arg = object(v, &f)?;
            let index = required_u64(arg, "index", &f)?;
            let Some(slot) = usize::try_from(index).ok().and_then(|i| seen.get_mut(i)) else {
                return Err(bad(
                    &format!("{f}.index"),
                    format!("{index} is not a syscall argument (0 to 5)"),
                ));
            };
            alternatives |= std::mem::replace(slot, true);
            let value = required_u64(arg, "value", &f)?;
            let value_two = optional_u64(arg, "valueTwo", &f)?.unwrap_or(0);
            let op_field = format!("{f}.op");
            let (op, datum) = match required_str(arg, "op", &f)? {
                "SCMP_CMP_NE" => (ScmpCompareOp::NotEqual, value),
                "SCMP_CMP_LT" => (ScmpCompareOp::Less, value),
                "SCMP_CMP_LE" => (ScmpCompareOp::LessOrEqual, value),
                "SCMP_CMP_EQ" => (ScmpCompareOp::Equal, value),
                "SCMP_CMP_GE" => (ScmpCompareOp::GreaterEqual, value),
                "SCMP_CMP_GT" => (ScmpCompareOp::Greater, value),
                "SCMP_CMP_MASKED_EQ" => (ScmpCompareOp::MaskedEqual(value), value_two),
                other => return Err(bad(&op_field, format!("unknown comparison {other:?}"))),
            };
            // Checked above to be below 6.
            args.push(ScmpArgCompare::new(index as u32, op, datum));
        }
        if alternatives {
            warnings.push(format!(
                "{field}.args: an argument is compared more than once; libseccomp cannot require \
                 both, so each comparison is a rule of its own (any one matches)"
            ));
        }
        Ok(Self { field, names, action, args, alternatives })
    }
}

/// An OCI action name, with the rule's (or default) errno.
fn action(name: &str, errno: Option<u32>, field: &str) -> Result<ScmpAction, SeccompError> {
    // Checked by `errno` to fit 16 bits.
    let ret = errno.unwrap_or(DEFAULT_ERRNO) as u16;
    Ok(match name {
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => ScmpAction::KillThread,
        "SCMP_ACT_KILL_PROCESS" => ScmpAction::KillProcess,
        "SCMP_ACT_TRAP" => ScmpAction::Trap,
        "SCMP_ACT_ERRNO" => ScmpAction::Errno(i32::from(ret)),
        "SCMP_ACT_TRACE" => ScmpAction::Trace(ret),
        "SCMP_ACT_ALLOW" => ScmpAction::Allow,
        "SCMP_ACT_LOG" => ScmpAction::Log,
        "SCMP_ACT_NOTIFY" => {
            return Err(bad(
                field,
                "SCMP_ACT_NOTIFY is not supported: sandfs runs no seccomp notify listener to \
                 answer the kernel"
                    .into(),
            ));
        }
        other => return Err(bad(field, format!("unknown seccomp action {other:?}"))),
    })
}

/// An OCI `SCMP_ARCH_*` name.
fn arch(name: &str, field: &str) -> Result<ScmpArch, SeccompError> {
    Ok(match name {
        "SCMP_ARCH_NATIVE" => ScmpArch::Native,
        "SCMP_ARCH_X86" => ScmpArch::X86,
        "SCMP_ARCH_X86_64" => ScmpArch::X8664,
        "SCMP_ARCH_X32" => ScmpArch::X32,
        "SCMP_ARCH_ARM" => ScmpArch::Arm,
        "SCMP_ARCH_AARCH64" => ScmpArch::Aarch64,
        "SCMP_ARCH_LOONGARCH64" => ScmpArch::Loongarch64,
        "SCMP_ARCH_M68K" => ScmpArch::M68k,
        "SCMP_ARCH_MIPS" => ScmpArch::Mips,
        "SCMP_ARCH_MIPS64" => ScmpArch::Mips64,
        "SCMP_ARCH_MIPS64N32" => ScmpArch::Mips64N32,
        "SCMP_ARCH_MIPSEL" => ScmpArch::Mipsel,
        "SCMP_ARCH_MIPSEL64" => ScmpArch::Mipsel64,
        "SCMP_ARCH_MIPSEL64N32" => ScmpArch::Mipsel64N32,
        "SCMP_ARCH_PPC" => ScmpArch::Ppc,
        "SCMP_ARCH_PPC64" => ScmpArch::Ppc64,
        "SCMP_ARCH_PPC64LE" => ScmpArch::Ppc64Le,
        "SCMP_ARCH_S390" => ScmpArch::S390,
        "SCMP_ARCH_S390X" => ScmpArch::S390X,
        "SCMP_ARCH_PARISC" => ScmpArch::Parisc,
        "SCMP_ARCH_PARISC64" => ScmpArch::Parisc64,
        "SCMP_ARCH_RISCV64" => ScmpArch::Riscv64,
        "SCMP_ARCH_SH" => ScmpArch::Sh,
        "SCMP_ARCH_SHEB" => ScmpArch::Sheb,
        other => return Err(bad(field, format!("unknown seccomp architecture {other:?}"))),
    })
}

/// The OCI name of an arch, for writing profiles.
pub(super) fn arch_name(arch: ScmpArch) -> Option<&'static str> {
    Some(match arch {
        ScmpArch::X86 => "SCMP_ARCH_X86",
        ScmpArch::X8664 => "SCMP_ARCH_X86_64",
        ScmpArch::X32 => "SCMP_ARCH_X32",
        ScmpArch::Arm => "SCMP_ARCH_ARM",
        ScmpArch::Aarch64 => "SCMP_ARCH_AARCH64",
        ScmpArch::S390 => "SCMP_ARCH_S390",
        ScmpArch::S390X => "SCMP_ARCH_S390X",
        _ => return None,
    })
}

/// `errnoRet`-like fields: absent (or null), or an errno the action's 16 bits hold.
fn errno(map: &Map<String, Value>, key: &str, parent: &str) -> Result<Option<u32>, SeccompError> {
    let Some(v) = optional_u64(map, key, parent)? else {
        return Ok(None);
    };
    match u16::try_from(v) {
        Ok(e) => Ok(Some(u32::from(e))),
        Err(_) => Err(bad(
            &format!("{parent}.{key}"),
            format!("{v} does not fit the 16 bits of a seccomp return value"),
        )),
    }
}

fn bad(field: &str, reason: String) -> SeccompError {
    SeccompError::Field { field: field.to_owned(), reason }
}

fn object<'a>(v: &'a Value, field: &str) -> Result<&'a Map<String, Value>, SeccompError> {
    v.as_object().ok_or_else(|| bad(field, "not an object".into()))
}

fn string<'a>(v: &'a Value, field: &str) -> Result<&'a str, SeccompError> {
    v.as_str().ok_or_else(|| bad(field, "not a string".into()))
}

fn required_str<'a>(map: &'a Map<String, Value>, key: &str, parent: &str) -> Result<&'a str, SeccompError> {
    let field = format!("{parent}.{key}");
    string(map.get(key).ok_or_else(|| bad(&field, "missing".into()))?, &field)
}

fn optional_array<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    parent: &str,
) -> Result<&'a [Value], SeccompError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(bad(&format!("{parent}.{key}"), "not an array".into())),
    }
}

fn optional_u64(map: &Map<String, Value>, key: &str, parent: &str) -> Result<Option<u64>, SeccompError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| bad(&format!("{parent}.{key}"), "not an unsigned 64-bit integer".into())),
    }
}

fn required_u64(map: &Map<String, Value>, key: &str, parent: &str) -> Result<u64, SeccompError> {
    optional_u64(map, key, parent)?.ok_or_else(|| bad(&format!("{parent}.{key}"), "missing".into()))
}
