//! Names handed to the CLIs: pools, namespaces, images, snapshots, trash ids.
//!
//! Image names come from notifications (nova's `<uuid>_disk`, OpenNebula's
//! `one-<image>-<vm>-<disk>`), i.e. from outside. A name is only ever passed as one argv
//! element (never through a shell), but the CLIs' option parser would still read a leading `-`
//! as an option and `/` or `@` as spec separators, so such names are refused here, with
//! control characters and empty names.

use std::fmt;

use crate::error::RbdError;

/// Check one name component.
pub fn check_name(what: &'static str, value: &str) -> Result<(), RbdError> {
    let bad = value.is_empty()
        || value.len() > 512
        || value.starts_with('-')
        || value.contains(['/', '@'])
        || value.chars().any(|c| c.is_control() || c.is_whitespace());
    if bad {
        return Err(RbdError::InvalidName {
            what,
            value: value.into(),
        });
    }
    Ok(())
}

/// `pool/[namespace/]image`: an RBD image as the CLIs name it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageSpec {
    /// Pool.
    pub pool: String,
    /// RADOS namespace, if any.
    pub namespace: Option<String>,
    /// Image name.
    pub image: String,
}

impl ImageSpec {
    /// A checked spec.
    pub fn new(
        pool: impl Into<String>,
        namespace: Option<String>,
        image: impl Into<String>,
    ) -> Result<Self, RbdError> {
        let spec = ImageSpec {
            pool: pool.into(),
            namespace: namespace.filter(|n| !n.is_empty()),
            image: image.into(),
        };
        check_name("pool", &spec.pool)?;
        if let Some(ns) = &spec.namespace {
            check_name("namespace", ns)?;
        }
        check_name("image", &spec.image)?;
        Ok(spec)
    }

    /// Parse `pool/image` or `pool/namespace/image` (as a locator stores it).
    pub fn parse(s: &str) -> Result<Self, RbdError> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [pool, image] => ImageSpec::new(*pool, None, *image),
            [pool, ns, image] => ImageSpec::new(*pool, Some((*ns).to_string()), *image),
            _ => Err(RbdError::InvalidName {
                what: "image spec",
                value: s.into(),
            }),
        }
    }

    /// The same image in another pool/namespace under another name.
    pub fn sibling(&self, pool: &str, image: &str) -> Result<Self, RbdError> {
        ImageSpec::new(pool, None, image)
    }

    /// `pool/[namespace/]image@snap`.
    pub fn at(&self, snap: &str) -> String {
        format!("{self}@{snap}")
    }

    /// `pool[/namespace]`: where trash and listing commands look.
    pub fn pool_spec(&self) -> PoolSpec {
        PoolSpec {
            pool: self.pool.clone(),
            namespace: self.namespace.clone(),
        }
    }
}

impl fmt::Display for ImageSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{}/{}", self.pool, ns, self.image),
            None => write!(f, "{}/{}", self.pool, self.image),
        }
    }
}

/// `pool[/namespace]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PoolSpec {
    /// Pool.
    pub pool: String,
    /// RADOS namespace, if any.
    pub namespace: Option<String>,
}

impl PoolSpec {
    /// A checked pool spec.
    pub fn new(pool: impl Into<String>, namespace: Option<String>) -> Result<Self, RbdError> {
        let spec = PoolSpec {
            pool: pool.into(),
            namespace: namespace.filter(|n| !n.is_empty()),
        };
        check_name("pool", &spec.pool)?;
        if let Some(ns) = &spec.namespace {
            check_name("namespace", ns)?;
        }
        Ok(spec)
    }

    /// An image in this pool.
    pub fn image(&self, image: &str) -> Result<ImageSpec, RbdError> {
        ImageSpec::new(self.pool.clone(), self.namespace.clone(), image)
    }
}

impl fmt::Display for PoolSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{}", self.pool, ns),
            None => write!(f, "{}", self.pool),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_cli_would_misread_are_refused() {
        for bad in ["", "-rf", "a/b", "a@b", "a b", "a\nb", "a\u{0}b"] {
            assert!(ImageSpec::new("vms", None, bad).is_err(), "{bad:?}");
        }
        let nova = ImageSpec::new("vms", None, "0f6c7a4e-3c1e-4f0c-9d2a-1b2c3d4e5f60_disk");
        assert!(nova.is_ok());
        assert_eq!(
            ImageSpec::parse("one/ns/one-7-42-0")
                .map(|s| s.to_string())
                .ok(),
            Some("one/ns/one-7-42-0".into())
        );
        assert!(ImageSpec::parse("one").is_err());
        assert!(ImageSpec::parse("a/b/c/d").is_err());
    }
}
