//! The multipart body of `POST /v1/images/edits`, as openai-python's `image_edit_params.py`
//! documents it: the source image as a file part, the instruction as `prompt`, and the same
//! model, size and format fields as a generation.

use reqwest::multipart::{Form, Part};

use crate::providers::{EditRequest, ProviderError};

/// The sizes the `gpt-image-*` models draw, as `(size, width, height)`.
const GPT_IMAGE_SIZES: [(&str, u32, u32); 3] =
    [("1024x1024", 1, 1), ("1536x1024", 3, 2), ("1024x1536", 2, 3)];

/// `dall-e-2` edits squares only; 1024x1024 is its largest.
const DALL_E_2_SIZES: [(&str, u32, u32); 1] = [("1024x1024", 1, 1)];

/// The form for one edit. `gpt-image-*` answers in base64 and refuses `response_format`;
/// `dall-e-2` answers with a URL unless asked for `b64_json`, and knows no `quality` but
/// `standard`, so it gets none.
pub(super) fn form(
    model: &str,
    quality: &str,
    request: &EditRequest,
) -> Result<Form, ProviderError> {
    let gpt_image = model.starts_with("gpt-image");
    let format = request.format;
    // The API tells formats apart by the part's name and type, as a browser upload would.
    let image = Part::stream_with_length(
        reqwest::Body::from(request.image.clone()),
        request.image.len() as u64,
    )
    .file_name(format!("image.{}", format.extension()))
    .mime_str(format.mime())
    .map_err(|error| {
        ProviderError::BadRequest(format!("could not build the image part: {error}"))
    })?;
    let mut form = Form::new()
        .text("model", model.to_owned())
        .part("image", image)
        .text("prompt", request.instruction.clone())
        .text("n", "1")
        .text("size", size(model, request.width, request.height));
    if gpt_image {
        form = form.text("quality", quality.to_owned()).text("output_format", "png");
    } else {
        form = form.text("response_format", "b64_json");
    }
    Ok(form)
}

/// The model's size nearest the requested shape.
pub(super) fn size(model: &str, width: u32, height: u32) -> &'static str {
    let sizes: &[(&'static str, u32, u32)] =
        if model.starts_with("dall-e") { &DALL_E_2_SIZES } else { &GPT_IMAGE_SIZES };
    crate::providers::nearest_ratio(sizes, width, height)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_is_the_models_nearest_shape() {
        assert_eq!(size("gpt-image-1", 1024, 1024), "1024x1024");
        assert_eq!(size("gpt-image-1", 1920, 1080), "1536x1024");
        assert_eq!(size("gpt-image-1", 600, 1000), "1024x1536");
        assert_eq!(size("gpt-image-1", 0, 0), "1024x1024");
        assert_eq!(size("dall-e-2", 1536, 1024), "1024x1024", "dall-e-2 edits squares only");
    }
}
