//! k3s and rke2 render containerd's config from a Go template (`config.toml.tmpl`). A line that is
//! only a template action (`{{ template "base" . }}`, `{{ if ... }}`, `{{ end }}`) is not TOML, so
//! it is masked as a TOML comment while the file is edited and put back afterwards. Actions inside
//! TOML strings (`sandbox_image = "{{ .PauseImage }}"`) are valid TOML and need no masking.

const MASK_PREFIX: &str = "#spore-masked-template-line:";

/// A template whose action lines are TOML comments for the time of an edit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Masked {
    pub text: String,
    actions: Vec<String>,
}

/// Whether `line` is nothing but one Go template action.
fn is_action_line(line: &str) -> bool {
    let trimmed = line.trim();
    trimmed.starts_with("{{") && trimmed.ends_with("}}")
}

/// Replaces every action line by a numbered comment.
pub fn mask(template: &str) -> Masked {
    let mut actions = Vec::new();
    let mut text = String::with_capacity(template.len());
    for line in template.split_inclusive('\n') {
        let (body, newline) = match line.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (line, ""),
        };
        if is_action_line(body) {
            text.push_str(&format!("{MASK_PREFIX}{}{newline}", actions.len()));
            actions.push(body.to_owned());
        } else {
            text.push_str(line);
        }
    }
    Masked { text, actions }
}

/// Why masked text could not be turned back into the template.
#[derive(Debug, thiserror::Error)]
#[error("the edit lost masked template line {index} ({action:?})")]
pub struct Unmask {
    pub index: usize,
    pub action: String,
}

/// Puts the action lines back into edited text that came from [`mask`].
pub fn unmask(edited: &str, masked: &Masked) -> Result<String, Unmask> {
    let mut out = String::with_capacity(edited.len());
    let mut seen = vec![false; masked.actions.len()];
    for line in edited.split_inclusive('\n') {
        let index = line
            .trim_end_matches('\n')
            .strip_prefix(MASK_PREFIX)
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n < masked.actions.len());
        match index {
            Some(n) => {
                seen[n] = true;
                out.push_str(&masked.actions[n]);
                if line.ends_with('\n') {
                    out.push('\n');
                }
            }
            None => out.push_str(line),
        }
    }
    if let Some(index) = seen.iter().position(|s| !s) {
        return Err(Unmask {
            index,
            action: masked.actions[index].clone(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = "{{ template \"base\" . }}\n\n{{ if .NodeConfig.AgentConfig.Snapshotter }}\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  snapshotter = \"{{ .NodeConfig.AgentConfig.Snapshotter }}\"\n{{ end }}";

    #[test]
    fn mask_then_unmask_gives_the_template_back() {
        let masked = mask(TEMPLATE);
        assert!(!masked.text.contains("{{ template"));
        assert!(masked.text.contains("snapshotter = \"{{ .NodeConfig"));
        masked
            .text
            .parse::<toml_edit::DocumentMut>()
            .expect("masked text is TOML");
        assert_eq!(unmask(&masked.text, &masked).expect("unmask"), TEMPLATE);
    }

    #[test]
    fn a_lost_action_is_an_error() {
        let masked = mask(TEMPLATE);
        let edited = masked.text.replacen(&format!("{MASK_PREFIX}0\n"), "", 1);
        let err = unmask(&edited, &masked).expect_err("lost line");
        assert_eq!(err.index, 0);
    }

    #[test]
    fn plain_toml_is_untouched() {
        let text = "version = 2\n";
        let masked = mask(text);
        assert_eq!(masked.text, text);
        assert_eq!(unmask(text, &masked).expect("unmask"), text);
    }
}
