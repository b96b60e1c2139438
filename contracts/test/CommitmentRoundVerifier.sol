// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IPocMarketplace} from "../interfaces/IPocMarketplace.sol";
import {IRoundVerifier} from "../interfaces/IRoundVerifier.sol";

/// @title CommitmentRoundVerifier
/// @notice Test-only verifier: accepts a "proof" equal to the keccak hash of exactly the public inputs
/// a real verifier binds (project, round, submissions digest, scores, outlier flags), signed over by
/// nobody. It exercises the marketplace's verifier path (binding, rejection, replay) until the ezkl
/// verifier adapter replaces it; it proves nothing about how the scores were computed.
contract CommitmentRoundVerifier is IRoundVerifier {
    /// @inheritdoc IRoundVerifier
    function verifyRound(
        uint256 projectId,
        uint32 round,
        bytes32 submissionsDigest,
        IPocMarketplace.RoundPost calldata post,
        bytes calldata proof
    ) external pure returns (bool ok) {
        if (proof.length != 32) return false;
        bytes32 expected = keccak256(abi.encode(projectId, round, submissionsDigest, post.scores, post.outliers));
        return bytes32(proof) == expected;
    }
}
