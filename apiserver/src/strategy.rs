//! What each kind adds to the generic registry: a `KindRules` implementation (defaulting and
//! validation on the typed k8s-openapi object), adapted by `Typed` into the object-safe
//! `Strategy` the registry calls with JSON values.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::decode;
use crate::kinds::KindInfo;
use crate::validation::{FieldError, FieldErrors};

/// Per-kind rules on the typed object. Every method has a default that does nothing, so a kind
/// implements only what varies.
pub trait KindRules: Send + Sync + 'static {
    type Object: Serialize + DeserializeOwned + Send;

    /// Fill in defaults (Kubernetes' `SetDefaults_*`), on create and on update.
    fn default(&self, _obj: &mut Self::Object) {}

    /// Validate a new object; push every error (do not stop at the first).
    fn validate(&self, _obj: &Self::Object, _errs: &mut FieldErrors) {}

    /// Validate an update against the stored object (immutable fields and the like). The
    /// default validates the new object as on create.
    fn validate_update(&self, new: &Self::Object, _old: &Self::Object, errs: &mut FieldErrors) {
        self.validate(new, errs)
    }
}

/// The registry's view of a kind.
pub trait Strategy: Send + Sync {
    fn info(&self) -> &'static KindInfo;

    /// Strictly decode `obj` (wrong types and unknown fields are field errors), apply defaults and
    /// return the canonical JSON. Metadata is validated by the registry, not here.
    fn decode_and_default(&self, obj: &Value) -> Result<Value, FieldErrors>;

    fn validate(&self, obj: &Value) -> FieldErrors;

    fn validate_update(&self, new: &Value, old: &Value) -> FieldErrors;
}

/// Adapts `KindRules` to `Strategy`.
pub struct Typed<R: KindRules> {
    pub info: &'static KindInfo,
    pub rules: R,
}

impl<R: KindRules> Typed<R> {
    fn typed(&self, obj: &Value) -> Result<R::Object, FieldErrors> {
        decode::strict::<R::Object>(obj)
    }
}

impl<R: KindRules> Strategy for Typed<R> {
    fn info(&self) -> &'static KindInfo {
        self.info
    }

    fn decode_and_default(&self, obj: &Value) -> Result<Value, FieldErrors> {
        let mut typed = self.typed(obj)?;
        self.rules.default(&mut typed);
        serde_json::to_value(&typed).map_err(|e| {
            vec![FieldError::invalid(
                &crate::validation::Path::root(""),
                e.to_string(),
                "cannot encode",
            )]
        })
    }

    fn validate(&self, obj: &Value) -> FieldErrors {
        let mut errs = Vec::new();
        match self.typed(obj) {
            Ok(t) => self.rules.validate(&t, &mut errs),
            Err(e) => errs.extend(e),
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> FieldErrors {
        let mut errs = Vec::new();
        match (self.typed(new), self.typed(old)) {
            (Ok(n), Ok(o)) => self.rules.validate_update(&n, &o, &mut errs),
            (Err(e), _) | (_, Err(e)) => errs.extend(e),
        }
        errs
    }
}
