//! The image pipeline through the server: renditions and previews, partial images, the S3 store.

mod image_variants;
mod partial_images;
mod s3_store;
