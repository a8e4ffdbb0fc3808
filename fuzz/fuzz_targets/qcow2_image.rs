//! Arbitrary bytes as the top image of a qcow2 chain (see
//! `ember_storage::fuzzing`): no panic, the backing image unchanged, no
//! other file created or removed. The same driver runs on stable in
//! `crates/ember-storage/tests/hostile_images.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ember_storage::fuzzing::open_hostile_image(data);
});
