//! The wasm ABI the page calls: three buffers in linear memory and two entry points, no
//! wasm-bindgen. The script asks for a buffer of a size (`request_buffer`, `random_buffer`),
//! writes into it, calls `seal` or `inspect` (which answer the length of a JSON reply in the
//! output buffer at `output_ptr`), reads the reply, then calls `wipe`.
//!
//! The buffers are Rust `Vec`s, so reading what the script wrote needs no unsafe code; only
//! the exports' `#[unsafe(no_mangle)]` does. Plaintext is zeroized after every call.

#![allow(unsafe_code)]

use std::cell::RefCell;

use zeroize::Zeroize;

use crate::seal::{MAX_ITEMS, MAX_REQUEST, RANDOM_BYTES_PER_VALUE, inspect_json, seal_json};

thread_local! {
    static REQUEST: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static RANDOM: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static OUTPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Replace `buf` by `len` zero bytes (the old contents wiped first); null when `len` > `max`.
fn fresh(buf: &'static std::thread::LocalKey<RefCell<Vec<u8>>>, len: usize, max: usize) -> *mut u8 {
    buf.with_borrow_mut(|v| {
        v.zeroize();
        if len > max {
            return std::ptr::null_mut();
        }
        *v = vec![0; len];
        v.as_mut_ptr()
    })
}

/// A buffer of `len` bytes for the request JSON; null if over the limit.
#[unsafe(no_mangle)]
pub extern "C" fn request_buffer(len: usize) -> *mut u8 {
    fresh(&REQUEST, len, MAX_REQUEST)
}

/// A buffer of `len` bytes for the random bytes; null if over the limit.
#[unsafe(no_mangle)]
pub extern "C" fn random_buffer(len: usize) -> *mut u8 {
    fresh(&RANDOM, len, MAX_ITEMS * RANDOM_BYTES_PER_VALUE)
}

/// Seal the request with the random bytes; the reply's length (JSON in the output buffer).
/// The request and the random bytes are wiped before it returns.
#[unsafe(no_mangle)]
pub extern "C" fn seal() -> usize {
    let reply = REQUEST.with_borrow(|req| RANDOM.with_borrow(|random| seal_json(req, random)));
    REQUEST.with_borrow_mut(|v| v.zeroize());
    RANDOM.with_borrow_mut(|v| v.zeroize());
    set_output(reply)
}

/// Describe the certificate PEM in the request buffer; the reply's length.
#[unsafe(no_mangle)]
pub extern "C" fn inspect() -> usize {
    let reply = REQUEST.with_borrow(|pem| inspect_json(pem));
    REQUEST.with_borrow_mut(|v| v.zeroize());
    set_output(reply)
}

/// Where the last reply is.
#[unsafe(no_mangle)]
pub extern "C" fn output_ptr() -> *const u8 {
    OUTPUT.with_borrow(|v| v.as_ptr())
}

/// Wipe every buffer (the reply holds no plaintext, but the script may be done with it).
#[unsafe(no_mangle)]
pub extern "C" fn wipe() {
    for b in [&REQUEST, &RANDOM, &OUTPUT] {
        b.with_borrow_mut(|v| v.zeroize());
    }
}

fn set_output(reply: String) -> usize {
    OUTPUT.with_borrow_mut(|v| {
        v.zeroize();
        *v = reply.into_bytes();
        v.len()
    })
}
