//! The guide's sampler: a standard sampler, plus "record what it drops, so
//! that traces ending in an error can still be kept".

use opentelemetry::trace::{Link, SpanKind, TraceContextExt, TraceId};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{Sampler, SamplingDecision, SamplingResult, ShouldSample};

use crate::config::TraceSampler;

/// Wraps a standard sampler. When `keep_errors` is on and the standard
/// sampler would drop a span of a trace decided in this process (a root, or
/// a child of a local parent that is held too), the span is recorded but not sampled
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
            // Undecided only when this process decides: at a root, or under
            // a local parent that is itself held. Under a remote parent, or a
            // local one that was dropped (its remote parent said "not
            // sampled"), no local root would ever release the span.
            let undecided = match parent_context.filter(|cx| cx.has_active_span()) {
                None => true,
                Some(cx) => {
                    let parent = cx.span();
                    !parent.span_context().is_remote() && parent.is_recording()
                }
            };
            if undecided {
                result.decision = SamplingDecision::RecordOnly;
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{
        Span as _, SpanContext, SpanId, TraceFlags, TraceState, Tracer, TracerProvider,
    };
    use opentelemetry_sdk::trace::SdkTracerProvider;

    use super::*;

    fn decide(sampler: &GuideSampler, parent: Option<&Context>) -> SamplingDecision {
        let trace_id = TraceId::from_bytes([0xff; 16]);
        sampler
            .should_sample(parent, trace_id, "child", &SpanKind::Internal, &[], &[])
            .decision
    }

    #[test]
    fn only_spans_a_local_root_will_release_are_held() {
        // Ratio 0: the base sampler drops everything it decides.
        let sampler = GuideSampler::new(TraceSampler::ParentBasedTraceIdRatio(0.0), true);
        assert_eq!(
            decide(&sampler, None),
            SamplingDecision::RecordOnly,
            "a root"
        );

        // Under a local parent that is held: held too.
        let holding = SdkTracerProvider::builder()
            .with_sampler(sampler.clone())
            .build()
            .tracer("test");
        let held = Context::current_with_span(holding.start("root"));
        assert!(held.span().is_recording());
        assert_eq!(decide(&sampler, Some(&held)), SamplingDecision::RecordOnly);

        // Under a remote parent that said "not sampled": dropped.
        let remote = Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from_bytes([1; 16]),
            SpanId::from_bytes([2; 8]),
            TraceFlags::default(),
            true,
            TraceState::default(),
        ));
        assert_eq!(decide(&sampler, Some(&remote)), SamplingDecision::Drop);

        // Under a local parent that was dropped (because of such a remote
        // parent): dropped, not held forever waiting for a root that never
        // reaches the processor.
        let dropped_parent = holding.start_with_context("request", &remote);
        assert!(!dropped_parent.is_recording());
        let dropped = remote.with_span(dropped_parent);
        assert_eq!(decide(&sampler, Some(&dropped)), SamplingDecision::Drop);
    }
}
