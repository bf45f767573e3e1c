//! `roll_dice`: rolls dice for a game night.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use crate::tools::{
    Annotations, ToolError, ToolOutput,
    typed::{Context, InlineTool},
};

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct RollDiceInput {
    /// How many six-sided dice, 1 to 10; 1 if omitted.
    pub dice: Option<u8>,
}

#[derive(Debug)]
pub struct RollDice;

#[async_trait]
impl InlineTool for RollDice {
    type Input = RollDiceInput;
    const NAME: &'static str = "roll_dice";
    const DESCRIPTION: &'static str = "Roll dice. Use when the user asks to roll.";
    const WITHIN: Duration = Duration::from_millis(100);

    fn annotations(&self) -> Annotations {
        Annotations { read_only: true, destructive: false, idempotent: false, open_world: false }
    }

    async fn call(&self, input: RollDiceInput, _: Context) -> Result<ToolOutput, ToolError> {
        let dice = input.dice.unwrap_or(1);
        if !(1..=10).contains(&dice) {
            let message = format!("`dice` is {dice}; roll 1 to 10 dice.");
            return Err(ToolError::InvalidArguments(message));
        }
        let rolls: Vec<u8> = (0..dice).map(|_| rand::random_range(1..=6)).collect();
        let text = format!("You rolled {rolls:?}.");
        Ok(ToolOutput { text, structured: json!({ "rolls": rolls }), job: None })
    }
}
