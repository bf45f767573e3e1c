//! The one prompt we serve: system-prompt lines that make a realtime voice model use async
//! tools well. Vendors' prompting guides converge on the same advice (say a short preamble,
//! then call; never call again while a job works; relay late results once), and most users
//! would otherwise write it badly by hand.

use rmcp::model::{GetPromptResult, Prompt, PromptMessage, Role};

pub(super) const NAME: &str = "voice_agent_tools";

const DESCRIPTION: &str = "System-prompt lines for a voice agent using these tools: preambles, background jobs, late results.";

const TEXT: &str = "# Tools
- Before calling a tool, say one short line such as \"Let me make that for you.\" Then call it \
immediately. Vary the wording.
- generate_image returns at once while the picture is made in the background. Tell the user it \
is on its way and keep talking. Never call it again for the same picture.
- When a result arrives later, tell the user once, briefly, even if the conversation has moved \
on. Do not invent results before they arrive. A tool result may start with lines such as \
\"The image of ... is ready.\" about earlier jobs: relay each once, then handle the result.
- Use job_status only when the user asks whether something is ready; use cancel_job when they \
say never mind.
- If a tool says it is busy or failed, say so in plain words and follow its advice.";

pub(super) fn list() -> Vec<Prompt> {
    vec![Prompt::new(NAME, Some(DESCRIPTION), None)]
}

/// `None` for unknown names.
pub(super) fn get(name: &str) -> Option<GetPromptResult> {
    (name == NAME).then(|| {
        let mut result = GetPromptResult::new(vec![PromptMessage::new_text(Role::User, TEXT)]);
        result.description = Some(DESCRIPTION.to_owned());
        result
    })
}
