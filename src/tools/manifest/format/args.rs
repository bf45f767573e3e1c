//! Arguments against parameters: validation and normalisation with messages a model can act
//! on, and each parameter's property in the source schema.

use serde_json::{Map, Value};

use super::{Param, ParamType};

/// Checks one argument against its parameter and normalises it. `Ok(None)`: treat as absent
/// (an empty optional string).
pub(super) fn check_value(param: &Param, value: &Value) -> Result<Option<Value>, String> {
    let fail = || format!("`{}` must be {}; got {}", param.name, expectation(param), got(value));
    let checked = match param.kind {
        ParamType::String => {
            let text = match value {
                Value::String(text) => text.trim().to_owned(),
                // Models sometimes send a code or a number where text is declared.
                Value::Number(number) => number.to_string(),
                Value::Bool(flag) => flag.to_string(),
                _ => return Err(fail()),
            };
            if text.is_empty() {
                return match param.required {
                    true => Err(format!("`{}` must not be empty", param.name)),
                    false => Ok(None),
                };
            }
            if let Some(choices) = &param.choices {
                let lower = text.to_lowercase();
                return choices
                    .iter()
                    .find(|choice| {
                        choice.as_str().is_some_and(|choice| choice.to_lowercase() == lower)
                    })
                    .map(|choice| Some(choice.clone()))
                    .ok_or_else(fail);
            }
            if param.max_length.is_some_and(|max| text.chars().count() > max) {
                return Err(fail());
            }
            Value::String(text)
        }
        ParamType::Integer => {
            let integer = match value {
                Value::Number(number) => {
                    number.as_i64().or_else(|| number.as_f64().and_then(whole))
                }
                Value::String(text) => {
                    let text = text.trim();
                    text.parse::<i64>().ok().or_else(|| text.parse::<f64>().ok().and_then(whole))
                }
                _ => None,
            };
            let integer = integer.ok_or_else(fail)?;
            if !in_range(param, integer as f64) {
                return Err(fail());
            }
            Value::from(integer)
        }
        ParamType::Number => {
            let number = match value {
                Value::Number(number) => Some(number.clone()),
                Value::String(text) => serde_json::from_str::<serde_json::Number>(text.trim()).ok(),
                _ => None,
            };
            let number = number.ok_or_else(fail)?;
            if !number.as_f64().is_some_and(|number| in_range(param, number)) {
                return Err(fail());
            }
            Value::Number(number)
        }
        ParamType::Boolean => match value {
            Value::Bool(flag) => Value::Bool(*flag),
            Value::String(text) => match text.trim().to_lowercase().as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => return Err(fail()),
            },
            _ => return Err(fail()),
        },
    };
    if let Some(choices) = &param.choices {
        let number = checked.as_f64();
        if !choices.iter().any(|choice| choice.as_f64() == number) {
            return Err(fail());
        }
    }
    Ok(Some(checked))
}

/// What a parameter accepts, as the end of "`x` must be …".
pub(super) fn expectation(param: &Param) -> String {
    if let Some(choices) = &param.choices {
        let choices: Vec<String> = choices.iter().map(Value::to_string).collect();
        return format!("one of {}", choices.join(", "));
    }
    let range = match (param.min, param.max) {
        (Some(min), Some(max)) => format!(" from {} to {}", number_text(min), number_text(max)),
        (Some(min), None) => format!(" of at least {}", number_text(min)),
        (None, Some(max)) => format!(" of at most {}", number_text(max)),
        (None, None) => String::new(),
    };
    match param.kind {
        ParamType::String => match param.max_length {
            Some(max) => format!("text of at most {max} characters"),
            None => "text".to_owned(),
        },
        ParamType::Integer => format!("a whole number{range}"),
        ParamType::Number => format!("a number{range}"),
        ParamType::Boolean => "true or false".to_owned(),
    }
}

/// One property of the source schema.
pub(super) fn param_schema(param: &Param) -> Value {
    let mut schema = Map::new();
    let kind = match param.kind {
        ParamType::String => "string",
        ParamType::Integer => "integer",
        ParamType::Number => "number",
        ParamType::Boolean => "boolean",
    };
    schema.insert("type".to_owned(), kind.into());
    if let Some(description) = &param.description {
        schema.insert("description".to_owned(), description.as_str().into());
    }
    if let Some(choices) = &param.choices {
        schema.insert("enum".to_owned(), Value::Array(choices.clone()));
    }
    for (key, bound) in [("minimum", param.min), ("maximum", param.max)] {
        if let Some(bound) = bound {
            schema.insert(key.to_owned(), number_value(bound));
        }
    }
    if let Some(max) = param.max_length {
        schema.insert("maxLength".to_owned(), max.into());
    }
    if let Some(default) = &param.default {
        schema.insert("default".to_owned(), default.clone());
    }
    Value::Object(schema)
}

fn in_range(param: &Param, number: f64) -> bool {
    param.min.is_none_or(|min| number >= min) && param.max.is_none_or(|max| number <= max)
}

/// `3.0` as `3`; `None` for fractions and for numbers past the exactly representable range.
fn whole(number: f64) -> Option<i64> {
    (number.fract() == 0.0 && number.abs() < 9.0e15).then_some(number as i64)
}

fn number_text(number: f64) -> String {
    whole(number).map_or_else(|| number.to_string(), |integer| integer.to_string())
}

fn number_value(number: f64) -> Value {
    whole(number).map_or_else(|| Value::from(number), Value::from)
}

/// The argument as the model sent it, shortened.
fn got(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(60) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}
