//! The guide's sampler: a standard sampler, plus "record what it drops, so
//! that traces ending in an error can still be kept".

use opentelemetry::trace::{Link, SpanKind, TraceContextExt, TraceId};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{Sampler, SamplingDecision, SamplingResult, ShouldSample};

use crate::config::TraceSampler;

/// Wraps a standard sampler. When `keep_errors` is on and the standard
/// sampler would drop a span of a trace decided in this process (a root, or
/// a child of a local parent), the span is recorded but not sampled
/// (`RecordOnly`): the span processor holds such spans until the local root
/// ends and exports them only if one of them has an error status. A remote
/// parent's decision is respected as `parentbased_*` does.
#[derive(Debug, Clone)]
pub(crate) struct GuideSampler {
    base: Sampler,
    keep_errors: bool,
}

impl GuideSampler {
    pub(crate) fn new(sampler: TraceSampler, keep_errors: bool) -> Self {
        let (base, ratio_based) = match sampler {
            TraceSampler::AlwaysOn => (Sampler::AlwaysOn, false),
            TraceSampler::AlwaysOff => (Sampler::AlwaysOff, false),
            TraceSampler::TraceIdRatio(ratio) => (Sampler::TraceIdRatioBased(ratio), true),
            TraceSampler::ParentBasedAlwaysOn => {
                (Sampler::ParentBased(Box::new(Sampler::AlwaysOn)), false)
            }
            TraceSampler::ParentBasedAlwaysOff => {
                (Sampler::ParentBased(Box::new(Sampler::AlwaysOff)), false)
            }
            TraceSampler::ParentBasedTraceIdRatio(ratio) => (
                Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio))),
                true,
            ),
        };
        Self {
            base,
            // Keeping errors only refines ratio sampling; `always_off` means off.
            keep_errors: keep_errors && ratio_based,
        }
    }
}

impl ShouldSample for GuideSampler {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        span_kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        let mut result =
            self.base
                .should_sample(parent_context, trace_id, name, span_kind, attributes, links);
        if self.keep_errors && result.decision == SamplingDecision::Drop {
            let remote_parent = parent_context
                .filter(|cx| cx.has_active_span())
                .is_some_and(|cx| cx.span().span_context().is_remote());
            if !remote_parent {
                result.decision = SamplingDecision::RecordOnly;
            }
        }
        result
    }
}
