package upstream

import (
	"context"
	"fmt"

	"golang.org/x/oauth2"

	"github.com/pollhook/pollhook/connectors"
)

// Authorizer is what the REST API needs of upstream credentials: the OAuth
// code exchange of POST and PATCH /instances, keeping the token it gives,
// and forgetting an instance's credentials when it is deleted. Safe for
// concurrent use.
type Authorizer struct {
	Registry *connectors.Registry
	Tokens   *TokenStore
	Clients  *Clients
}

// ExchangeCode exchanges an authorization code for the first token of an
// instance of connector elementKey (see the package function ExchangeCode
// for its errors). The instance need not exist yet.
func (a *Authorizer) ExchangeCode(ctx context.Context, elementKey string, configuration map[string]any, secrets map[string]string, code string) (*oauth2.Token, error) {
	def, ok := a.Registry.Get(elementKey)
	if !ok {
		return nil, fmt.Errorf("connector %q is not defined", elementKey)
	}
	return ExchangeCode(ctx, def, configuration, secrets, code)
}

// SaveToken stores the token of instance id; its client loads it when it is
// next built (a new instance revision).
func (a *Authorizer) SaveToken(ctx context.Context, id int64, tok *oauth2.Token) error {
	return a.Tokens.Save(ctx, id, tok)
}

// Forget drops the client and the stored token of instance id.
func (a *Authorizer) Forget(ctx context.Context, id int64) error {
	a.Clients.Forget(id)
	return a.Tokens.Delete(ctx, id)
}
