package events

import "testing"

func TestSubjectReplacesCharactersNotAllowedInATokenWithUnderscore(t *testing.T) {
	t.Parallel()
	tests := []struct {
		element, object, eventType string
		want                       string
	}{
		{"infusionsoftrest", "contacts", "CREATED", "pollhook.events.infusionsoftrest.12.contacts.created"},
		{"generic", "sales.orders", "UPDATED", "pollhook.events.generic.12.sales_orders.updated"},
		{"generic", "a b*c>d\te", "DELETED", "pollhook.events.generic.12.a_b_c_d_e.deleted"},
		{"generic", "", "UPDATED", "pollhook.events.generic.12._.updated"},
		{"generic", "Modified Time", "UPDATED", "pollhook.events.generic.12.Modified_Time.updated"},
	}
	for _, tt := range tests {
		if got := Subject(tt.element, 12, tt.object, tt.eventType); got != tt.want {
			t.Errorf("Subject(%q, 12, %q, %q) = %q, want %q", tt.element, tt.object, tt.eventType, got, tt.want)
		}
	}
}
