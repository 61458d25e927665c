module misbehave-go

go 1.24

require github.com/rulewatch/rulewatch/sdk/go v0.0.0

replace github.com/rulewatch/rulewatch/sdk/go => ../../../sdk/go
