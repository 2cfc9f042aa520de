//! Fuzz targets (proptest mutation fuzzing, `spore_e2e::fuzz`) for the containerd configs the
//! node installer edits. Whatever the text, the edit ends in a clear error or in a config that
//! parses, has the `spore` runtime, is left alone by a second edit, and gives the runtime back
//! up on uninstall; Go-template masking gives back the text it took. Seeds: containerd 1.7's
//! and 2.x's `config default`, a k3s-style template, small and empty files
//! (`tests/corpus/containerd-config/`).

use std::path::Path;

use proptest::prelude::*;
use spore_e2e::fuzz;
use spore_node_install::containerd_config::{
    RuntimeEntry, Unversioned, ensure_runtime, parse, remove_runtime,
};
use spore_node_install::go_template::{mask, unmask};

fn corpus() -> Vec<Vec<u8>> {
    fuzz::seeds(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/containerd-config"))
}

fn entry() -> RuntimeEntry {
    RuntimeEntry {
        runtime_path: "/opt/spore/bin/containerd-shim-spore-v1".into(),
        systemd_cgroup: true,
    }
}

proptest! {
    #![proptest_config(fuzz::config())]

    #[test]
    fn fuzz_containerd_config_edit(text in fuzz::text_inputs(corpus())) {
        match ensure_runtime(&text, &entry(), Unversioned::LikeContainerd) {
            Ok(edited) => {
                prop_assert!(parse(&edited.text).is_ok(), "the edit does not parse:\n{}", edited.text);
                let again = ensure_runtime(&edited.text, &entry(), Unversioned::LikeContainerd)
                    .expect("an edited config edits again");
                prop_assert!(!again.changed, "a second edit changed:\n{}", edited.text);
                let removed = remove_runtime(&edited.text).expect("the runtime can be removed");
                prop_assert!(removed.changed || !edited.changed);
            }
            Err(err) => prop_assert!(!err.to_string().is_empty()),
        }
    }

    #[test]
    fn fuzz_go_template_mask_round_trip(text in fuzz::text_inputs(corpus())) {
        let masked = mask(&text);
        prop_assert_eq!(unmask(&masked.text, &masked).expect("unmask"), text);
    }
}
