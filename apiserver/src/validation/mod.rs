//! Validation: field errors in Kubernetes' form (`spec.replicas: Invalid value: -1: ...`) and the
//! validators every kind shares (names, labels, annotations, quantities, selectors).

use std::fmt;

pub mod common;
pub mod pod_spec;

/// A field path such as `spec.containers[0].env[1].value`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Path(String);

impl Path {
    pub fn root(name: &str) -> Path {
        Path(name.to_string())
    }
    /// `a.b`
    pub fn child(&self, name: &str) -> Path {
        if self.0.is_empty() {
            Path(name.to_string())
        } else {
            Path(format!("{}.{name}", self.0))
        }
    }
    /// `a[3]`
    pub fn index(&self, i: usize) -> Path {
        Path(format!("{}[{i}]", self.0))
    }
    /// `a[key]`
    pub fn key(&self, k: &str) -> Path {
        Path(format!("{}[{k}]", self.0))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What is wrong with a field (Kubernetes' `field.ErrorType`).
#[derive(Debug, Clone, PartialEq)]
pub enum FieldErrorKind {
    Required,
    /// The value (rendered as Kubernetes does: strings quoted) is not valid.
    Invalid(String),
    /// The value is not one of `allowed`.
    NotSupported {
        value: String,
        allowed: Vec<String>,
    },
    Duplicate(String),
    Forbidden,
    TooLong {
        max: usize,
    },
    /// The field is not known for this kind (strict decoding).
    Unknown,
    /// The JSON type is wrong (e.g. a boolean where a string is expected).
    TypeInvalid(String),
}

/// One field error.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub path: Path,
    pub kind: FieldErrorKind,
    pub detail: String,
}

impl FieldError {
    pub fn required(path: &Path, detail: &str) -> FieldError {
        FieldError {
            path: path.clone(),
            kind: FieldErrorKind::Required,
            detail: detail.into(),
        }
    }
    /// `value` is rendered like Go's `%#v` for strings: quoted.
    pub fn invalid(path: &Path, value: impl fmt::Debug, detail: &str) -> FieldError {
        FieldError {
            path: path.clone(),
            kind: FieldErrorKind::Invalid(format!("{value:?}")),
            detail: detail.into(),
        }
    }
    pub fn not_supported(path: &Path, value: &str, allowed: &[&str]) -> FieldError {
        FieldError {
            path: path.clone(),
            kind: FieldErrorKind::NotSupported {
                value: value.to_string(),
                allowed: allowed.iter().map(|s| s.to_string()).collect(),
            },
            detail: String::new(),
        }
    }
    pub fn duplicate(path: &Path, value: impl fmt::Debug) -> FieldError {
        FieldError {
            path: path.clone(),
            kind: FieldErrorKind::Duplicate(format!("{value:?}")),
            detail: String::new(),
        }
    }
    pub fn forbidden(path: &Path, detail: &str) -> FieldError {
        FieldError {
            path: path.clone(),
            kind: FieldErrorKind::Forbidden,
            detail: detail.into(),
        }
    }
    pub fn too_long(path: &Path, max: usize) -> FieldError {
        FieldError {
            path: path.clone(),
            kind: FieldErrorKind::TooLong { max },
            detail: String::new(),
        }
    }
    pub fn unknown(path: &Path) -> FieldError {
        FieldError {
            path: path.clone(),
            kind: FieldErrorKind::Unknown,
            detail: String::new(),
        }
    }
    pub fn type_invalid(path: &Path, detail: &str) -> FieldError {
        FieldError {
            path: path.clone(),
            kind: FieldErrorKind::TypeInvalid(String::new()),
            detail: detail.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let detail = |f: &mut fmt::Formatter<'_>| {
            if self.detail.is_empty() {
                Ok(())
            } else {
                write!(f, ": {}", self.detail)
            }
        };
        match &self.kind {
            FieldErrorKind::Required => {
                write!(f, "{}: Required value", self.path).and_then(|_| detail(f))
            }
            FieldErrorKind::Invalid(v) => {
                write!(f, "{}: Invalid value: {v}", self.path).and_then(|_| detail(f))
            }
            FieldErrorKind::NotSupported { value, allowed } => {
                let allowed: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
                write!(
                    f,
                    "{}: Unsupported value: {value:?}: supported values: {}",
                    self.path,
                    allowed.join(", ")
                )
            }
            FieldErrorKind::Duplicate(v) => write!(f, "{}: Duplicate value: {v}", self.path),
            FieldErrorKind::Forbidden => {
                write!(f, "{}: Forbidden", self.path).and_then(|_| detail(f))
            }
            FieldErrorKind::TooLong { max } => {
                write!(
                    f,
                    "{}: Too long: may not be more than {max} bytes",
                    self.path
                )
            }
            FieldErrorKind::Unknown => write!(f, "{}: Unknown field", self.path),
            FieldErrorKind::TypeInvalid(_) => {
                write!(f, "{}: Invalid type", self.path).and_then(|_| detail(f))
            }
        }
    }
}

/// A list of field errors, for validators to push into.
pub type FieldErrors = Vec<FieldError>;
