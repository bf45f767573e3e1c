//! What a model is shown of the tools, and what that costs: the compact schema compiler
//! (`schema`), o200k token counts (`tokens`), the budgets profiles are held to and where the
//! default profile's tools go (`budget`), the `tools check` report (`check`) and the export
//! for realtime platforms (`export`). It reads tool definitions and knows nothing of how tools
//! run.

pub mod budget;
pub mod check;
pub mod export;
pub mod schema;
pub mod tokens;
