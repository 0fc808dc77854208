//! `wfdb completions SHELL`: shell completion scripts, generated from the command definition
//! so that every verb and option is covered as soon as it exists.

use std::io::Write;

use clap_complete::Shell;

/// How to install the script, shown by `wfdb completions --help`.
pub const INSTALL: &str = "\
Install:
  bash  wfdb completions bash > ~/.local/share/bash-completion/completions/wfdb
  zsh   wfdb completions zsh > ~/.zfunc/_wfdb
        (and in ~/.zshrc, before compinit: fpath=(~/.zfunc $fpath))
  fish  wfdb completions fish > ~/.config/fish/completions/wfdb.fish
  elvish, powershell: print the script and source it from the shell's startup file.
Open a new shell afterwards.";

/// Writes the completion script of `cmd` for `shell`.
pub fn write(shell: Shell, cmd: &mut clap::Command, w: &mut dyn Write) -> std::io::Result<()> {
    let name = cmd.get_name().to_string();
    let mut script = Vec::new();
    clap_complete::generate(shell, cmd, name, &mut script);
    w.write_all(&script)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(shell: Shell) -> String {
        let mut out = Vec::new();
        write(shell, &mut super::super::command(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// Every verb, nested ones too, as (parent path, name).
    fn verbs(cmd: &clap::Command, parent: &str, out: &mut Vec<(String, String)>) {
        for sub in cmd.get_subcommands() {
            out.push((parent.to_string(), sub.get_name().to_string()));
            verbs(sub, &format!("{parent} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_verb_is_in_every_script() {
        let mut all = Vec::new();
        verbs(&super::super::command(), "wfdb", &mut all);
        assert!(all.len() > 40, "{all:?}");
        assert!(all.iter().any(|(p, v)| p == "wfdb graph" && v == "export"));
        for shell in [
            Shell::Bash,
            Shell::Zsh,
            Shell::Fish,
            Shell::Elvish,
            Shell::PowerShell,
        ] {
            let text = script(shell);
            for (parent, verb) in &all {
                assert!(
                    text.contains(verb.as_str()),
                    "{shell}: `{parent} {verb}` is not completed"
                );
            }
            // Options reach the scripts too, global ones and a verb's own.
            for option in ["socket", "json", "min-size", "max-watches"] {
                let spelled = match shell {
                    Shell::Fish => format!("-l {option}"),
                    _ => format!("--{option}"),
                };
                assert!(text.contains(&spelled), "{shell}: {spelled} missing");
            }
        }
    }

    #[test]
    fn bash_accepts_the_bash_script() {
        let text = script(Shell::Bash);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("wfdb.bash");
        std::fs::write(&file, &text).unwrap();
        let checked = std::process::Command::new("bash")
            .arg("-n")
            .arg(&file)
            .output();
        let Ok(out) = checked else {
            eprintln!("skipped: bash is not installed");
            return;
        };
        assert!(
            out.status.success(),
            "bash -n: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The script registers itself for the command name.
        assert!(text.contains("complete -F _wfdb"), "{}", &text[..200]);
    }

    #[test]
    fn zsh_and_fish_scripts_name_the_command() {
        assert!(script(Shell::Zsh).starts_with("#compdef wfdb"));
        assert!(script(Shell::Fish).contains("complete -c wfdb"));
    }
}
