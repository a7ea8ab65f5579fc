//! `Maybe`: an optional number in the room of a number.

use serde::{Deserialize, Serialize};

/// A number or none, in 8 bytes (an `Option<f64>` takes 16): none is NaN,
/// which no number held this way is (gauges and views refuse it). A view
/// holds ten per server, a server's signals four, and a fleet has a
/// hundred thousand servers. Written and read as the `Option` would be, so
/// snapshots keep their layout.
#[derive(Debug, Clone, Copy)]
pub struct Maybe(f64);

impl Maybe {
    pub fn get(self) -> Option<f64> {
        (!self.0.is_nan()).then_some(self.0)
    }

    pub fn is_none(&self) -> bool {
        self.0.is_nan()
    }
}

impl Default for Maybe {
    fn default() -> Self {
        Maybe(f64::NAN)
    }
}

impl From<Option<f64>> for Maybe {
    /// A NaN given is none too.
    fn from(v: Option<f64>) -> Self {
        Maybe(v.unwrap_or(f64::NAN))
    }
}

impl PartialEq for Maybe {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Serialize for Maybe {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.get().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Maybe {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Option::<f64>::deserialize(d).map(Maybe::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Snapshots hold gauges as `Option<f64>` did: the same bytes, read
    /// back to the same value, a number or none.
    #[test]
    fn a_maybe_is_written_and_read_as_the_option() {
        for v in [Some(3.5), Some(0.0), None] {
            let bytes = postcard::to_allocvec(&Maybe::from(v)).unwrap();
            assert_eq!(bytes, postcard::to_allocvec(&v).unwrap(), "{v:?}");
            let back: Maybe = postcard::from_bytes(&bytes).unwrap();
            assert_eq!(back.get(), v);
        }
        assert!(Maybe::from(Some(f64::NAN)).is_none(), "NaN given is none");
    }
}
