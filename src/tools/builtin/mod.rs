//! The built-in Rust tools: one file each and one line each in [`all`], the one list. A new
//! tool is its file, its `mod` line and its line in the list.

pub mod cancel_job;
pub mod edit_image;
pub mod generate_image;
pub mod job_status;

use std::sync::Arc;

use super::{
    Services, Tool,
    typed::{Background, Inline, InlineTool, JobTool},
};

/// Every built-in tool this deployment offers. Job tools are served by [`Background`], inline
/// tools by [`Inline`]; a line yields `None` when the deployment cannot serve its tool.
pub fn all(services: &Arc<Services>) -> Vec<Arc<dyn Tool>> {
    let offered = vec![
        Some(job(generate_image::GenerateImage::new(services.clone()), services)),
        // A tool no configured provider can serve would only cost tokens and fail.
        services
            .router
            .can_edit()
            .then(|| job(edit_image::EditImage::new(services.clone()), services)),
        Some(inline(job_status::JobStatusTool::new(services.clone()))),
        Some(inline(cancel_job::CancelJob::new(services.clone()))),
    ];
    offered.into_iter().flatten().collect()
}

fn job<T: JobTool>(tool: T, services: &Arc<Services>) -> Arc<dyn Tool> {
    Arc::new(Background::new(tool, services.clone()))
}

fn inline<T: InlineTool>(tool: T) -> Arc<dyn Tool> {
    Arc::new(Inline::new(tool))
}

// README's worked example of a Rust tool: compiled and called by the tests, never offered.
#[cfg(test)]
pub mod roll_dice;
#[cfg(test)]
mod tests;
