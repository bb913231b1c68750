//! Runnable examples of the cloud connector (the binaries in `src/bin/` and the
//! `[[example]]`s). This library only compiles the README's code blocks as doc tests, so
//! the front page's snippets stay true to the API.

#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
