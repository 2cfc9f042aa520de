//! Mutation fuzzing on `proptest`, for the parsers of everything Spore reads from outside
//! (cargo-fuzz needs a nightly toolchain, which this project's machines cannot fetch).
//!
//! A target's inputs are its seed corpus (files in the repository, `tests/corpus/<target>/`
//! of the crate) edited by a few random truncations, byte flips, insertions, deletions and
//! splices from other seeds, plus wholly arbitrary bytes. Each target runs a bounded number of
//! cases (`SPORE_FUZZ_CASES`, default [`DEFAULT_CASES`]) so CI covers every target in seconds.
//! CI's inputs are the same every run (a fixed seed, [`DEFAULT_SEED`]), so a failure there is
//! reproducible and never depends on luck; `SPORE_FUZZ_SEED=random` (or a number) explores
//! new inputs: `SPORE_FUZZ_SEED=random SPORE_FUZZ_CASES=1000000 cargo nextest run -E
//! 'binary(fuzz)'`. A failing case is shrunk and printed by proptest; nothing is written into
//! the repository.

use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

/// Cases per target when `SPORE_FUZZ_CASES` is not set.
pub const DEFAULT_CASES: u32 = 1_000;
/// The seed of the inputs when `SPORE_FUZZ_SEED` is not set.
pub const DEFAULT_SEED: u64 = 0x5e0e_f022;

/// The proptest configuration of a fuzz target: the case count, no persisted failures.
pub fn config() -> Config {
    let cases = std::env::var("SPORE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    let rng_seed = match std::env::var("SPORE_FUZZ_SEED").as_deref() {
        Ok("random") => RngSeed::Random,
        Ok(n) => n
            .parse()
            .map(RngSeed::Fixed)
            .unwrap_or(RngSeed::Fixed(DEFAULT_SEED)),
        Err(_) => RngSeed::Fixed(DEFAULT_SEED),
    };
    Config {
        cases,
        failure_persistence: None,
        rng_seed,
        ..Config::default()
    }
}

/// The files of a seed corpus directory; panics when there are none, since a target without
/// seeds would test nothing but noise.
pub fn seeds(dir: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("seed corpus {}: {e}", dir.display()))
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files
        .iter()
        .map(|path| std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

/// One edit of an input; positions are taken modulo the input's length.
#[derive(Debug, Clone)]
enum Edit {
    Truncate(usize),
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    /// Copies a piece of another seed over this position.
    Splice {
        at: usize,
        seed: usize,
        from: usize,
        len: usize,
    },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(at, bit)| Edit::Flip(at, bit)),
        (any::<usize>(), interesting_bytes()).prop_map(|(at, bytes)| Edit::Insert(at, bytes)),
        (any::<usize>(), 1usize..64).prop_map(|(at, len)| Edit::Delete(at, len)),
        (any::<usize>(), any::<usize>(), any::<usize>(), 1usize..256).prop_map(
            |(at, seed, from, len)| Edit::Splice {
                at,
                seed,
                from,
                len
            }
        ),
    ]
}

/// Bytes that parsers trip on: structure characters, huge numbers, NULs, invalid UTF-8.
fn interesting_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 1..16),
        prop::sample::select(vec![
            b"{".to_vec(),
            b"}".to_vec(),
            b"[".to_vec(),
            b"]".to_vec(),
            b"\"".to_vec(),
            b"\\u0000".to_vec(),
            b"\0".to_vec(),
            b"\xff\xfe".to_vec(),
            b"18446744073709551616".to_vec(),
            b"-1".to_vec(),
            b"1e400".to_vec(),
            b"null".to_vec(),
            b"[[".to_vec(),
            b"= ".to_vec(),
            b"\n[".to_vec(),
            b"\xff\xff\xff\xff\x0f".to_vec(),
        ]),
    ]
}

fn apply(input: &mut Vec<u8>, edit: &Edit, seeds: &[Vec<u8>]) {
    let at = |pos: usize, len: usize| if len == 0 { 0 } else { pos % (len + 1) };
    match edit {
        Edit::Truncate(pos) => {
            let cut = at(*pos, input.len());
            input.truncate(cut);
        }
        Edit::Flip(pos, bit) => {
            if !input.is_empty() {
                let i = pos % input.len();
                input[i] ^= 1 << (bit % 8);
            }
        }
        Edit::Insert(pos, bytes) => {
            let i = at(*pos, input.len());
            input.splice(i..i, bytes.iter().copied());
        }
        Edit::Delete(pos, len) => {
            let i = at(*pos, input.len());
            let end = (i + len).min(input.len());
            input.drain(i..end);
        }
        Edit::Splice {
            at: pos,
            seed,
            from,
            len,
        } => {
            let donor = &seeds[seed % seeds.len()];
            if donor.is_empty() {
                return;
            }
            let start = from % donor.len();
            let end = (start + len).min(donor.len());
            let i = at(*pos, input.len());
            let stop = (i + (end - start)).min(input.len());
            input.splice(i..stop, donor[start..end].iter().copied());
        }
    }
}

/// Inputs for a target: mostly seeds with up to eight edits, sometimes arbitrary bytes.
pub fn inputs(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let count = seeds.len();
    let mutated = (0..count, prop::collection::vec(edit(), 0..8)).prop_map(move |(i, edits)| {
        let mut input = seeds[i].clone();
        for edit in &edits {
            apply(&mut input, edit, &seeds);
        }
        input
    });
    prop_oneof![
        9 => mutated,
        1 => prop::collection::vec(any::<u8>(), 0..512),
    ]
}

/// Inputs as text (invalid UTF-8 replaced), for parsers that take `&str`.
pub fn text_inputs(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = String> {
    inputs(seeds).prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    #[test]
    fn inputs_are_seeds_and_their_edits() {
        let seeds = vec![b"{\"a\": [1, 2, 3]}".to_vec(), b"version = 2\n".to_vec()];
        let strategy = inputs(seeds.clone());
        let mut runner = TestRunner::deterministic();
        let drawn: Vec<Vec<u8>> = (0..200)
            .map(|_| strategy.new_tree(&mut runner).expect("tree").current())
            .collect();
        assert!(
            drawn.iter().any(|d| seeds.contains(d)),
            "some seeds as they are"
        );
        assert!(
            drawn.iter().filter(|d| !seeds.contains(d)).count() > 100,
            "most inputs are edited"
        );
    }

    #[test]
    fn every_edit_stays_in_bounds() {
        let seeds = vec![Vec::new(), b"x".to_vec()];
        let edits = [
            Edit::Truncate(usize::MAX),
            Edit::Flip(usize::MAX, 255),
            Edit::Insert(usize::MAX, vec![1, 2]),
            Edit::Delete(usize::MAX, 63),
            Edit::Splice {
                at: usize::MAX,
                seed: usize::MAX,
                from: usize::MAX,
                len: 255,
            },
        ];
        for seed in &seeds {
            for edit in &edits {
                let mut input = seed.clone();
                apply(&mut input, edit, &seeds);
            }
        }
    }
}
