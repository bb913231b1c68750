//! The AWS IoT Core device endpoint's back end (see the crate docs).

pub(crate) mod shadow;
pub(crate) mod sigv4;
