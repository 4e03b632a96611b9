package vault

// Observer is told of the service's refusals and replays, for metrics. Its
// methods must be cheap and must not block. It gets actions, route
// surfaces and rule fields, never ids or card data.
type Observer interface {
	// Refused is a request refused by a budget or rate rule: the audited
	// action and the rule's field (card_id, device_id, Authorization).
	Refused(action, rule string)
	// Replayed is a request answered from its Idempotency-Key's first
	// answer, by surface ("POST /v1/...", the route template).
	Replayed(surface string)
	// AuditWriteFailed is a refusal whose audit entry could not be
	// written; the refusal still stands.
	AuditWriteFailed(action string)
	// Verified is a card verification's answer for one field ("cvv",
	// "expiry"): Match or NoMatch.
	Verified(field, answer string)
}

type nopObserver struct{}

func (nopObserver) Refused(string, string)  {}
func (nopObserver) Replayed(string)         {}
func (nopObserver) AuditWriteFailed(string) {}
func (nopObserver) Verified(string, string) {}
